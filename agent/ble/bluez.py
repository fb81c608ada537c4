"""What the agent needs to know about BlueZ's D-Bus API: names, calls, and which errors mean what.

Errors are classified once here (after Home Assistant's habluetooth): some are worth retrying at once,
some mean the adapter or bluetoothd is gone and we should wait for it to come back, the rest are bugs
worth reporting. Everything else in ``agent/ble`` decides by class, never by string matching.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"


class ErrorClass(Enum):
    RETRY = "retry"  # transient: InProgress, NotReady, Failed, timeouts
    GONE = "gone"  # the adapter or bluetoothd is not there (now): wait for it to return
    REJECTED = "rejected"  # BlueZ refused what we sent: a bug or an unsupported controller


class BluezError(Exception):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.error_class = classify(name)


_GONE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.bluez.Error.NotAvailable",
    "org.bluez.Error.DoesNotExist",
}
_RETRY = {
    "org.bluez.Error.InProgress",
    "org.bluez.Error.NotReady",
    "org.bluez.Error.Failed",
    "org.bluez.Error.Busy",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
}


def classify(error_name: str) -> ErrorClass:
    if error_name in _GONE:
        return ErrorClass.GONE
    if error_name in _RETRY:
        return ErrorClass.RETRY
    return ErrorClass.REJECTED


async def call(
    bus: MessageBus, path: str, interface: str, member: str, signature: str = "", body: list[Any] | None = None
) -> list[Any]:
    """A method call on org.bluez; an error reply becomes a classified BluezError."""
    reply = await bus.call(
        Message(destination=BLUEZ, path=path, interface=interface, member=member, signature=signature, body=body or [])
    )
    if reply is None:
        raise BluezError("org.freedesktop.DBus.Error.NoReply", "no reply")
    if reply.message_type == MessageType.ERROR:
        text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
        raise BluezError(reply.error_name or "unknown", text)
    return list(reply.body)


async def managed_objects(bus: MessageBus) -> dict[str, dict[str, dict[str, Any]]]:
    [objects] = await call(bus, "/", OBJECT_MANAGER, "GetManagedObjects")
    return objects  # type: ignore[no-any-return]


async def adapters(bus: MessageBus) -> dict[str, dict[str, Any]]:
    """Adapter name (hciN) → its interfaces, for every adapter BlueZ has."""
    return {
        path.rsplit("/", 1)[-1]: ifaces for path, ifaces in (await managed_objects(bus)).items() if ADAPTER in ifaces
    }


def adapter_path(name: str) -> str:
    return f"/org/bluez/{name}"


def owner_changed_rule() -> str:
    return (
        "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
        "member='NameOwnerChanged',arg0='org.bluez'"
    )


def interfaces_rule() -> str:
    return f"type='signal',interface='{OBJECT_MANAGER}'"

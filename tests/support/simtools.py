"""Test helpers for the D-Bus tier: a raw advertiser client and polling."""

from __future__ import annotations

import asyncio
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

FD6F = "0000fd6f-0000-1000-8000-00805f9b34fb"
FD64 = "0000fd64-0000-1000-8000-00805f9b34fb"


def advert_props(data: bytes, uuid: str = FD6F, tx_power: bool = False, **extra: Variant) -> dict[str, Variant]:
    props = {
        "Type": Variant("s", "broadcast"),
        "ServiceUUIDs": Variant("as", [uuid]),
        "ServiceData": Variant("a{sv}", {uuid: Variant("ay", data)}),
        **extra,
    }
    if tx_power:
        props["Includes"] = Variant("as", ["tx-power"])
    return props


class RawAdvertiser:
    """A D-Bus client that serves an LEAdvertisement1 as raw Variants, so a test can send any types."""

    def __init__(self, bus: MessageBus, props: dict[str, Variant], path: str = "/test/adv0") -> None:
        self.bus = bus
        self.path = path
        self.props = props
        self.releases = 0
        bus.add_message_handler(self._handle)

    @classmethod
    async def connect(cls, address: str, props: dict[str, Variant], path: str = "/test/adv0") -> RawAdvertiser:
        return cls(await MessageBus(bus_address=address).connect(), props, path)

    def _handle(self, msg: Message) -> bool:
        if msg.message_type is not MessageType.METHOD_CALL or msg.path != self.path:
            return False
        if msg.member == "GetAll":
            self.bus.send(Message.new_method_return(msg, "a{sv}", [self.props]))
        elif msg.member == "Release":
            self.releases += 1
            self.bus.send(Message.new_method_return(msg))
        else:
            return False
        return True

    async def call(self, adapter: str, member: str) -> Message:
        sig, body = ("oa{sv}", [self.path, {}]) if member == "RegisterAdvertisement" else ("o", [self.path])
        return await bluez_call(self.bus, f"/org/bluez/{adapter}", "org.bluez.LEAdvertisingManager1", member, sig, body)

    async def register(self, adapter: str) -> None:
        reply = await self.call(adapter, "RegisterAdvertisement")
        assert reply.message_type is MessageType.METHOD_RETURN, reply.error_name

    async def unregister(self, adapter: str) -> None:
        reply = await self.call(adapter, "UnregisterAdvertisement")
        assert reply.message_type is MessageType.METHOD_RETURN, reply.error_name

    def emit_changed(self, changed: dict[str, Variant]) -> None:
        self.props.update(changed)
        self.bus.send(
            Message.new_signal(
                self.path,
                "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                "sa{sv}as",
                ["org.bluez.LEAdvertisement1", changed, []],
            )
        )


async def bluez_call(
    bus: MessageBus, path: str, interface: str, member: str, signature: str = "", body: list[Any] | None = None
) -> Message:
    msg = Message(
        destination="org.bluez", path=path, interface=interface, member=member, signature=signature, body=body or []
    )
    return await asyncio.wait_for(bus.call(msg), 10)


async def add_match(bus: MessageBus, rule: str) -> None:
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )
    assert reply.message_type is MessageType.METHOD_RETURN, reply.error_name

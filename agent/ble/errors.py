"""What a BlueZ failure means for recovery, after Home Assistant's habluetooth: classify, then act.

The advertiser and the scanner see errors from three layers (bleak, dbus-fast, the socket) for the same few
situations. Recovery only needs to know which situation it is in: try again soon, wait for the adapter to
come back, wait for bluetoothd to come back, reconnect to the bus, or stop asking for something BlueZ
refuses (passive scanning without ``--experimental``).
"""

from __future__ import annotations

import enum

from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError, BleakError
from dbus_fast import DBusError


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"  # InProgress, Failed, a timeout: restart after a short backoff
    NOT_READY = "not-ready"  # adapter powered off or busy: power it on / cycle it
    ADAPTER_GONE = "adapter-gone"  # wait for InterfacesAdded of that adapter
    BLUEZ_GONE = "bluez-gone"  # org.bluez has no owner: wait for NameOwnerChanged
    BUS_GONE = "bus-gone"  # the D-Bus connection itself died: reconnect
    UNSUPPORTED = "unsupported"  # BlueZ cannot do what we asked (passive scanning without --experimental)
    REJECTED = "rejected"  # our request is wrong or not permitted: report, back off long
    UNKNOWN = "unknown"


_BY_DBUS_NAME = {
    "org.bluez.Error.InProgress": ErrorKind.TRANSIENT,
    "org.bluez.Error.Failed": ErrorKind.TRANSIENT,
    "org.bluez.Error.Busy": ErrorKind.TRANSIENT,
    "org.freedesktop.DBus.Error.NoReply": ErrorKind.TRANSIENT,
    "org.freedesktop.DBus.Error.Timeout": ErrorKind.TRANSIENT,
    "org.bluez.Error.NotReady": ErrorKind.NOT_READY,
    "org.bluez.Error.DoesNotExist": ErrorKind.ADAPTER_GONE,
    "org.freedesktop.DBus.Error.UnknownObject": ErrorKind.ADAPTER_GONE,
    "org.freedesktop.DBus.Error.UnknownMethod": ErrorKind.ADAPTER_GONE,
    "org.freedesktop.DBus.Error.ServiceUnknown": ErrorKind.BLUEZ_GONE,
    "org.freedesktop.DBus.Error.NameHasNoOwner": ErrorKind.BLUEZ_GONE,
    "org.freedesktop.DBus.Error.Disconnected": ErrorKind.BUS_GONE,
    "org.bluez.Error.NotSupported": ErrorKind.UNSUPPORTED,
    "org.bluez.Error.InvalidArguments": ErrorKind.REJECTED,
    "org.bluez.Error.NotPermitted": ErrorKind.REJECTED,
    "org.bluez.Error.NotAuthorized": ErrorKind.REJECTED,
    "org.freedesktop.DBus.Error.AccessDenied": ErrorKind.REJECTED,
    "org.bluez.Error.AlreadyExists": ErrorKind.REJECTED,
}


def dbus_error_name(exc: BaseException) -> str | None:
    if isinstance(exc, BleakDBusError):
        return exc.dbus_error
    if isinstance(exc, DBusError):
        return exc.type
    return None


def classify(exc: BaseException) -> ErrorKind:
    name = dbus_error_name(exc)
    if name is not None:
        return _BY_DBUS_NAME.get(name, ErrorKind.UNKNOWN)
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return {
            BleakBluetoothNotAvailableReason.POWERED_OFF: ErrorKind.NOT_READY,
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH: ErrorKind.ADAPTER_GONE,
            BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM: ErrorKind.REJECTED,
            BleakBluetoothNotAvailableReason.DENIED_BY_USER: ErrorKind.REJECTED,
        }.get(exc.reason, ErrorKind.UNKNOWN)
    if isinstance(exc, BleakError):
        text = str(exc)
        if "not found" in text and "adapter" in text:
            return ErrorKind.ADAPTER_GONE
        if "passive scanning" in text:
            return ErrorKind.UNSUPPORTED
        return ErrorKind.UNKNOWN
    if isinstance(exc, TimeoutError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, EOFError | ConnectionError | FileNotFoundError | OSError):
        return ErrorKind.BUS_GONE
    return ErrorKind.UNKNOWN


def describe(exc: BaseException) -> str:
    """A short reason for health and logs: the error's class and D-Bus name, never payloads."""
    name = dbus_error_name(exc)
    kind = classify(exc).value
    return f"{type(exc).__name__}[{name}] ({kind})" if name else f"{type(exc).__name__} ({kind})"

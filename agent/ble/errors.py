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

from agent.ble.names import (
    E_ACCESS_DENIED,
    E_ALREADY_EXISTS,
    E_BUSY,
    E_DISCONNECTED,
    E_DOES_NOT_EXIST,
    E_FAILED,
    E_IN_PROGRESS,
    E_INVALID_ARGUMENTS,
    E_NAME_HAS_NO_OWNER,
    E_NO_REPLY,
    E_NOT_AUTHORIZED,
    E_NOT_PERMITTED,
    E_NOT_READY,
    E_NOT_SUPPORTED,
    E_SERVICE_UNKNOWN,
    E_TIMEOUT,
    E_UNKNOWN_METHOD,
    E_UNKNOWN_OBJECT,
)


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
    E_IN_PROGRESS: ErrorKind.TRANSIENT,
    E_FAILED: ErrorKind.TRANSIENT,
    E_BUSY: ErrorKind.TRANSIENT,
    E_NO_REPLY: ErrorKind.TRANSIENT,
    E_TIMEOUT: ErrorKind.TRANSIENT,
    E_NOT_READY: ErrorKind.NOT_READY,
    E_DOES_NOT_EXIST: ErrorKind.ADAPTER_GONE,
    E_UNKNOWN_OBJECT: ErrorKind.ADAPTER_GONE,
    E_UNKNOWN_METHOD: ErrorKind.ADAPTER_GONE,
    E_SERVICE_UNKNOWN: ErrorKind.BLUEZ_GONE,
    E_NAME_HAS_NO_OWNER: ErrorKind.BLUEZ_GONE,
    E_DISCONNECTED: ErrorKind.BUS_GONE,
    E_NOT_SUPPORTED: ErrorKind.UNSUPPORTED,
    E_INVALID_ARGUMENTS: ErrorKind.REJECTED,
    E_NOT_PERMITTED: ErrorKind.REJECTED,
    E_NOT_AUTHORIZED: ErrorKind.REJECTED,
    E_ACCESS_DENIED: ErrorKind.REJECTED,
    E_ALREADY_EXISTS: ErrorKind.REJECTED,
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

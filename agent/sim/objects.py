"""A plain object tree served over D-Bus: paths → interfaces → property Variants.

The simulator does not use dbus-fast's ``ServiceInterface`` for BlueZ objects. bluetoothd decides per object
which properties exist (a Device1 has ``TxPower`` only when the advert carried one), emits ObjectManager
signals from ``/``, and needs the caller's unique name in several methods; a table of Variants answered by
a raw message handler does all three directly, and emitting a signal costs one dict update and one send.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from dbus_fast import Message, Variant
from dbus_fast.aio import MessageBus

from agent.ble.names import (
    E_DBUS_INVALID_ARGS,
    E_PROPERTY_READ_ONLY,
    E_UNKNOWN_METHOD,
    GET,
    GET_ALL,
    GET_MANAGED_OBJECTS,
    INTERFACES_ADDED,
    INTERFACES_REMOVED,
    INTROSPECTABLE,
    OBJECT_MANAGER,
    PROPERTIES,
    PROPERTIES_CHANGED,
    SET,
)

STANDARD = {INTROSPECTABLE: {}, PROPERTIES: {}}

Setter = Callable[[str, Variant], tuple[str, str] | None]
"""Called with (path, value); returns (error name, message) to refuse, None when applied."""

Interfaces = dict[str, dict[str, Variant]]


class _TolerantSocket:
    """dbus-fast 5.2 treats EAGAIN from a non-blocking send as fatal (python-dbus-next#153): a burst of
    signals bigger than the socket buffer would kill the connection. Report "nothing sent" instead, and its
    writer waits for the socket to become writable as it does after a partial write."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes | memoryview) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def sendmsg(self, *args: Any) -> int:
        try:
            return self._sock.sendmsg(*args)
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def tolerate_full_socket(bus: MessageBus) -> None:
    writer = getattr(bus, "_writer", None)
    if writer is not None and isinstance(getattr(writer, "sock", None), socket.socket):
        writer.sock = _TolerantSocket(writer.sock)


def send_backlog(bus: MessageBus) -> int:
    """Messages waiting in dbus-fast's writer: the simulator stops adding reports when the bus lags."""
    writer = getattr(bus, "_writer", None)
    return len(getattr(writer, "messages", ()))


class ObjectTable:
    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.objects: dict[str, Interfaces] = {}
        self._setters: dict[tuple[str, str], Setter] = {}

    def add_setter(self, interface: str, prop: str, setter: Setter) -> None:
        self._setters[(interface, prop)] = setter

    def add(self, path: str, interfaces: Interfaces) -> None:
        self.objects[path] = interfaces
        self.emit_interfaces_added(path, interfaces)

    def remove(self, path: str) -> None:
        interfaces = self.objects.pop(path, None)
        if interfaces is not None:
            self.emit_interfaces_removed(path, list(interfaces))

    def update(self, path: str, interface: str, changed: dict[str, Variant]) -> None:
        self.objects[path][interface].update(changed)
        self.emit_properties_changed(path, interface, changed)

    def value(self, path: str, interface: str, prop: str) -> object:
        return self.objects[path][interface][prop].value

    def emit_interfaces_added(self, path: str, interfaces: Interfaces) -> None:
        body = {**STANDARD, **interfaces}
        self._send_signal("/", OBJECT_MANAGER, INTERFACES_ADDED, "oa{sa{sv}}", [path, body])

    def emit_interfaces_removed(self, path: str, interfaces: list[str]) -> None:
        names = [*STANDARD, *interfaces]
        self._send_signal("/", OBJECT_MANAGER, INTERFACES_REMOVED, "oas", [path, names])

    def emit_properties_changed(
        self, path: str, interface: str, changed: dict[str, Variant], invalidated: list[str] | None = None
    ) -> None:
        self._send_signal(path, PROPERTIES, PROPERTIES_CHANGED, "sa{sv}as", [interface, changed, invalidated or []])

    def _send_signal(self, path: str, interface: str, member: str, signature: str, body: list[object]) -> None:
        if self._bus.connected:
            self._bus.send(Message.new_signal(path, interface, member, signature, body))

    def handle(self, msg: Message) -> bool:
        """Answer Properties, ObjectManager and Introspectable calls on our paths; False for anything else."""
        interface = msg.interface
        if interface == PROPERTIES and msg.path in self.objects:
            self._bus.send(self._properties(msg))
            return True
        if interface == OBJECT_MANAGER and msg.member == GET_MANAGED_OBJECTS and msg.path == "/":
            body = {p: {**STANDARD, **ifaces} for p, ifaces in self.objects.items()}
            self._bus.send(Message.new_method_return(msg, "a{oa{sa{sv}}}", [body]))
            return True
        if interface == INTROSPECTABLE and msg.member == "Introspect":
            self._bus.send(Message.new_method_return(msg, "s", [self._introspect(msg.path or "/")]))
            return True
        return False

    def _properties(self, msg: Message) -> Message:
        ifaces = self.objects[msg.path or ""]
        member, sig, body = msg.member, msg.signature, msg.body
        if member == GET_ALL and sig == "s":
            return Message.new_method_return(msg, "a{sv}", [ifaces.get(body[0], {})])
        if member == GET and sig == "ss":
            value = ifaces.get(body[0], {}).get(body[1])
            if value is None:
                return Message.new_error(msg, E_DBUS_INVALID_ARGS, "No such property")
            return Message.new_method_return(msg, "v", [value])
        if member == SET and sig == "ssv":
            iface, prop, value = body
            if prop not in ifaces.get(iface, {}):
                return Message.new_error(msg, E_DBUS_INVALID_ARGS, "No such property")
            setter = self._setters.get((iface, prop))
            if setter is None:
                return Message.new_error(msg, E_PROPERTY_READ_ONLY, "Read-only property")
            if value.signature != ifaces[iface][prop].signature:
                return Message.new_error(msg, E_DBUS_INVALID_ARGS, "Wrong property type")
            refused = setter(msg.path or "", value)
            if refused is not None:
                return Message.new_error(msg, *refused)
            return Message.new_method_return(msg)
        return Message.new_error(msg, E_UNKNOWN_METHOD, f"{member} is not known")

    def _introspect(self, path: str) -> str:
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix) :].split("/")[0] for p in self.objects if p.startswith(prefix)})
        ifaces = [*STANDARD, *self.objects.get(path, {})]
        if path == "/":
            ifaces.append(OBJECT_MANAGER)
        parts = [
            '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
            ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">',
            "<node>",
        ]
        parts += [f' <interface name="{escape(i)}"/>' for i in ifaces]
        parts += [f' <node name="{escape(c)}"/>' for c in children if c]
        parts.append("</node>")
        return "\n".join(parts)

"""Who owns ``org.bluez`` right now, and which adapters it has — from our own D-Bus connection.

bleak never notices bluetoothd going away and coming back: its scan goes silent without an error, and an
advertisement registered with the old daemon is simply gone. So the agent watches ``NameOwnerChanged`` for
``org.bluez`` and the ObjectManager signals for adapters itself, and the advertiser and the scanners wait
on this one state: a new ``generation`` means "BlueZ restarted, register and scan again"; an adapter leaving
the set means "wait for it to come back".

Every call here has a timeout. A bus daemon that does not answer AddMatch or GetNameOwner leaves a
connection nobody can trust, so that is reported as a lost bus (the edge reconnects). A bluetoothd that
does not answer GetManagedObjects is asked again, with backoff, for as long as it owns ``org.bluez``:
otherwise the agent would sit with no adapters, neither advertising nor scanning, for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from agent.aio import within
from agent.backoff import backoff_delay
from agent.ble.names import (
    ADAPTER1,
    ADAPTER_PREFIX,
    ADD_MATCH,
    BLUEZ,
    BUS_DAEMON,
    BUS_DAEMON_PATH,
    GET_MANAGED_OBJECTS,
    GET_NAME_OWNER,
    INTERFACES_ADDED,
    INTERFACES_REMOVED,
    NAME_OWNER_CHANGED,
    OBJECT_MANAGER,
    PROPERTIES,
    PROPERTIES_CHANGED,
)
from agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class BusLost(ConnectionError):
    """Our own D-Bus connection died; everything built on it must be rebuilt."""


@dataclass(frozen=True)
class BluezState:
    owner: str | None = None
    generation: int = 0
    adapters: frozenset[str] = frozenset()
    unpowered: frozenset[str] = frozenset()
    bus_lost: bool = False

    def ready(self, adapter: str) -> bool:
        return self.owner is not None and adapter in self.adapters


def adapter_name(path: str) -> str | None:
    """``/org/bluez/hci0`` → ``hci0``; None for devices and anything else."""
    if not path.startswith(ADAPTER_PREFIX):
        return None
    rest = path[len(ADAPTER_PREFIX) :]
    return rest if rest and "/" not in rest else None


class BluezWatch:
    def __init__(self, bus: MessageBus, io_clock: Clock | None = None, call_timeout_s: float = 10.0) -> None:
        self.bus = bus
        self._io = io_clock or SystemClock()
        self._timeout = call_timeout_s
        self.adapter_read_failures = 0
        self.last_error: str | None = None
        self.state = BluezState()
        self.owner_changes = 0
        self._changed = asyncio.Event()
        self._refresh: asyncio.Task[None] | None = None
        self._lost_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.bus.add_message_handler(self._on_message)
        for rule in (
            f"type='signal',sender='{BUS_DAEMON}',interface='{BUS_DAEMON}',member='{NAME_OWNER_CHANGED}',arg0='{BLUEZ}'",
            f"type='signal',interface='{OBJECT_MANAGER}',member='{INTERFACES_ADDED}',arg0path='{ADAPTER_PREFIX}'",
            f"type='signal',interface='{OBJECT_MANAGER}',member='{INTERFACES_REMOVED}',arg0path='{ADAPTER_PREFIX}'",
            f"type='signal',interface='{PROPERTIES}',member='{PROPERTIES_CHANGED}',arg0='{ADAPTER1}',"
            "path_namespace='/org/bluez'",
        ):
            await self._bus_call(ADD_MATCH, "s", [rule])
        reply = await self._bus_call(GET_NAME_OWNER, "s", [BLUEZ])
        if reply.message_type is MessageType.METHOD_RETURN:
            self._new_owner(reply.body[0])
        self._lost_task = asyncio.get_running_loop().create_task(self._watch_bus())

    def close(self) -> None:
        self.bus.remove_message_handler(self._on_message)
        for task in (self._refresh, self._lost_task):
            if task is not None:
                task.cancel()

    async def wait_until(self, predicate: Callable[[BluezState], bool]) -> BluezState:
        """The first state (maybe the current one) that satisfies ``predicate``; raises BusLost."""
        while True:
            state = self.state
            if state.bus_lost:
                raise BusLost("D-Bus connection lost")
            if predicate(state):
                return state
            await self._changed.wait()

    def _publish(self, state: BluezState) -> None:
        if state == self.state:
            return
        self.state = state
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _watch_bus(self) -> None:
        try:
            await self.bus.wait_for_disconnect()
        except Exception:  # the reason does not matter: the connection is gone either way
            log.debug("bus disconnected with an error", exc_info=True)
        log.warning("D-Bus connection lost")
        self._publish(replace(self.state, owner=None, adapters=frozenset(), bus_lost=True))

    async def _bus_call(self, member: str, signature: str, body: list[object]) -> Message:
        call = Message(
            destination=BUS_DAEMON,
            path=BUS_DAEMON_PATH,
            interface=BUS_DAEMON,
            member=member,
            signature=signature,
            body=body,
        )
        try:
            return await within(self._io, self._timeout, self.bus.call(call))
        except TimeoutError:
            reason = f"the bus daemon did not answer {member} within {self._timeout:g} s"
            raise BusLost(f"D-Bus connection unusable: {reason}") from None

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is not MessageType.SIGNAL:
            return False
        if msg.member == NAME_OWNER_CHANGED and msg.sender == BUS_DAEMON and msg.body[0] == BLUEZ:
            self._new_owner(msg.body[2])
        elif msg.member == PROPERTIES_CHANGED and msg.body[0] == ADAPTER1 and "Powered" in msg.body[1]:
            name = adapter_name(msg.path or "")
            if name is not None and msg.sender == self.state.owner:
                self._set_powered(name, bool(msg.body[1]["Powered"].value))
        elif msg.member in (INTERFACES_ADDED, INTERFACES_REMOVED) and msg.interface == OBJECT_MANAGER:
            owner = self.state.owner
            if owner is None or msg.sender != owner:
                return False  # only BlueZ itself speaks for BlueZ's objects
            name = adapter_name(msg.body[0])
            if name is None:
                return False
            if msg.member == INTERFACES_ADDED and ADAPTER1 in msg.body[1]:
                log.info("adapter %s appeared", name)
                self._publish(replace(self.state, adapters=self.state.adapters | {name}))
                powered = msg.body[1][ADAPTER1].get("Powered")
                if powered is not None:
                    self._set_powered(name, bool(powered.value))
            elif msg.member == INTERFACES_REMOVED and ADAPTER1 in msg.body[1]:
                log.warning("adapter %s disappeared", name)
                self._publish(replace(self.state, adapters=self.state.adapters - {name}))
        return False

    def _new_owner(self, owner: str) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        if not owner:
            log.warning("BlueZ stopped (org.bluez has no owner)")
            self._publish(replace(self.state, owner=None, adapters=frozenset(), unpowered=frozenset()))
            return
        if owner == self.state.owner:
            return
        self.owner_changes += 1
        log.info("BlueZ is running (owner %s)", owner)
        self._publish(
            replace(
                self.state,
                owner=owner,
                generation=self.state.generation + 1,
                adapters=frozenset(),
                unpowered=frozenset(),
            )
        )
        self._refresh = asyncio.get_running_loop().create_task(self._read_adapters(owner))

    async def _read_adapters(self, owner: str) -> None:
        attempt = 0
        while self.state.owner == owner:
            call = Message(destination=owner, path="/", interface=OBJECT_MANAGER, member=GET_MANAGED_OBJECTS)
            try:
                reply = await within(self._io, self._timeout, self.bus.call(call))
            except TimeoutError:
                reason = f"no answer within {self._timeout:g} s"
            else:
                if reply.message_type is MessageType.METHOD_RETURN:
                    if self.state.owner == owner:
                        self._adapters_read(reply)
                    return
                reason = reply.error_name or "an error reply"
            attempt += 1
            self.adapter_read_failures += 1
            self.last_error = f"{GET_MANAGED_OBJECTS}: {reason}"
            log.warning("BlueZ did not list its adapters (%s, attempt %d); asking again", reason, attempt)
            await self._io.sleep(backoff_delay(attempt, maximum=30.0))

    def _adapters_read(self, reply: Message) -> None:
        found, off = set(), set()
        for path, ifaces in reply.body[0].items():
            name = adapter_name(path)
            if name is None or ADAPTER1 not in ifaces:
                continue
            found.add(name)
            powered = ifaces[ADAPTER1].get("Powered")
            if powered is not None and not powered.value:
                off.add(name)
        self._publish(replace(self.state, adapters=self.state.adapters | found, unpowered=frozenset(off)))

    def _set_powered(self, name: str, on: bool) -> None:
        unpowered = self.state.unpowered - {name} if on else self.state.unpowered | {name}
        self._publish(replace(self.state, unpowered=unpowered))

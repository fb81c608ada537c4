"""Tells the BLE parts when bluetoothd or an adapter comes and goes.

bleak does not notice a bluetoothd restart (its scans just go silent) and BlueZ forgets our advert with
it, so one watcher on the agent's own D-Bus connection follows NameOwnerChanged for org.bluez and the
ObjectManager's adapter signals; the advertiser and the scanners wait on it to re-register and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from agent.ble.bluez import ADAPTER, BLUEZ, BluezError, adapters, interfaces_rule, owner_changed_rule

log = logging.getLogger(__name__)


class BluezWatch:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.owner: str | None = None
        self.adapters: set[str] = set()
        self.generation = 0  # bumps on every change that may need re-registration or a scanner restart
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bus.add_message_handler(self._on_message)
        for rule in (owner_changed_rule(), interfaces_rule()):
            await self.bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetNameOwner",
                signature="s",
                body=[BLUEZ],
            )
        )
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            self.owner = reply.body[0]
            await self.refresh_adapters()
        self._bump()

    async def refresh_adapters(self) -> None:
        try:
            self.adapters = set(await adapters(self.bus))
        except BluezError as exc:
            log.warning("cannot list adapters: %s", exc)
            self.adapters = set()

    def stop(self) -> None:
        self.bus.remove_message_handler(self._on_message)

    @property
    def available(self) -> bool:
        return self.owner is not None

    def has_adapter(self, name: str) -> bool:
        return self.owner is not None and name in self.adapters

    async def wait_change(self, generation: int, timeout: float | None = None) -> int:
        """Wait until the generation moves past ``generation`` (or the timeout); returns the current one."""
        if self.generation == generation:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.generation

    def _bump(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type != MessageType.SIGNAL:
            return False
        if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == BLUEZ:
            new_owner = msg.body[2] or None
            log.info("bluetoothd %s", "appeared" if new_owner else "went away")
            self.owner = new_owner
            self.adapters = set()
            if new_owner:
                task = asyncio.get_running_loop().create_task(self._after_appear())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._bump()
        elif msg.member == "InterfacesAdded" and msg.sender == self.owner and ADAPTER in msg.body[1]:
            name = msg.body[0].rsplit("/", 1)[-1]
            log.info("adapter %s appeared", name)
            self.adapters.add(name)
            self._bump()
        elif msg.member == "InterfacesRemoved" and msg.sender == self.owner and ADAPTER in msg.body[1]:
            name = msg.body[0].rsplit("/", 1)[-1]
            log.warning("adapter %s went away", name)
            self.adapters.discard(name)
            self._bump()
        return False

    async def _after_appear(self) -> None:
        await self.refresh_adapters()
        self._bump()

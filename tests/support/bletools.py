"""Helpers for the BLE edge tests: schemes with fresh keys and agents on their own event loop (polling is in
support.polling)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from agent.ble.bluez_watch import BluezWatch
from agent.ble.edge import BleEdge, BleHealth
from agent.ble.scanner import Scanner
from agent.schemes import ebid, gaen
from agent.schemes.ebid import EbidBatch, EbidEntry, EbidScheme
from agent.schemes.gaen import GaenScheme
from agent.sightings import RawSighting

_T = TypeVar("_T")


def gaen_scheme(t: float, days: int = 2) -> GaenScheme:
    first = gaen.new_tek(t)
    keys = [first] + [
        gaen.TemporaryExposureKey(os.urandom(16), first.rolling_start_interval_number + 144 * d) for d in range(1, days)
    ]
    return GaenScheme(tuple(keys))


def ebid_scheme(t: float, periods: int = 200, period_s: int = 900) -> EbidScheme:
    start = ebid.period_of(t, period_s)
    kg = os.urandom(16)
    entries = []
    for p in range(start, start + periods):
        e = ebid.make_ebid(os.urandom(16), os.urandom(16))
        entries.append(EbidEntry(p, e, ebid.make_ecc(kg, e, 0x21)))
    return EbidScheme(EbidBatch(period_s, tuple(entries)))


class AgentThread:
    """One agent's BLE edge on its own thread and event loop (bleak keeps one connection per loop)."""

    def __init__(self, make_edge: Callable[[Callable[[RawSighting], None]], BleEdge]) -> None:
        self.sightings: list[RawSighting] = []
        self._make_edge = make_edge
        self.edge: BleEdge | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> AgentThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.edge = self._make_edge(self.sightings.append)
        task = asyncio.create_task(self.edge.run())
        self._ready.set()
        await self._stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the agent's loop (to read or poke its objects safely)."""
        assert self._loop is not None

        async def wrapper() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def health(self) -> BleHealth:
        assert self.edge is not None
        if not self._thread.is_alive():
            return self.edge.health()
        return self.call(self.edge.health)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


@asynccontextmanager
async def on_bluez(work: Callable[[BluezWatch], Coroutine[Any, Any, None]]) -> AsyncIterator[BluezWatch]:
    """Run ``work`` on its own system-bus connection and BlueZ watch for the duration."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    watch = BluezWatch(bus)
    await watch.start()
    task = asyncio.create_task(work(watch))
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        watch.close()
        bus.disconnect()


def scanning(scanner: Scanner) -> AbstractAsyncContextManager[BluezWatch]:
    return on_bluez(scanner.run)

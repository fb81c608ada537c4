"""Broadcasts the scheme's live ID and rotates it, with a fresh random address, at every ID boundary.

Rotation is unregister → register with the new data, never an in-place update: the kernel programs a new
non-resolvable address only when an advertising instance is set up, and an in-place update would put the
new ID on air under the old address for a moment. Scanning on the same controller is paused around it,
because legacy controllers (the Pi's) refuse a new random address while scanning and would silently stay
off the air. Failures are retried with backoff and reported in health; nothing here ends the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from dbus_fast.aio import MessageBus

from agent.ble.advertisement import Advertisement
from agent.ble.bluez import ADV_MANAGER, BluezError, ErrorClass, adapter_path, call
from agent.ble.watch import BluezWatch
from agent.clock import Clock
from agent.schemes.base import Broadcast, Scheme

log = logging.getLogger(__name__)

ScanPause = Callable[[str], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def no_pause(adapter: str) -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class AdvertiserHealth:
    adapter: str
    advertising: bool
    rotations: int
    last_rotation_at: float | None
    failures: int
    last_error: str | None


class Advertiser:
    def __init__(
        self,
        bus: MessageBus,
        watch: BluezWatch,
        adapter: str,
        scheme: Callable[[], Scheme],
        clock: Clock,
        tx_power: int,
        scan_pause: ScanPause = no_pause,
        path: str = "/org/proxitrace/advertisement0",
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.bus = bus
        self.watch = watch
        self.adapter = adapter
        self.scheme = scheme
        self.clock = clock
        self.tx_power = tx_power
        self.scan_pause = scan_pause
        self.path = path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._advert = Advertisement(self._released)
        self._registered = False
        self._live: Broadcast | None = None
        self._rotations = 0
        self._last_rotation_at: float | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._kick = asyncio.Event()
        self.on_rotation: Callable[[Broadcast, float], None] | None = None

    def health(self) -> AdvertiserHealth:
        return AdvertiserHealth(
            self.adapter, self._registered, self._rotations, self._last_rotation_at, self._failures, self._last_error
        )

    async def run(self) -> None:
        self.bus.export(self.path, self._advert)
        try:
            await self._loop()
        finally:
            await self._unregister()
            self.bus.unexport(self.path, self._advert)

    async def _loop(self) -> None:
        delay = self.backoff_initial
        generation = self.watch.generation
        while True:
            if not self.watch.has_adapter(self.adapter):
                self._registered = False
                self._live = None
                log.warning(
                    "advertising on %s waits for the adapter (bluetoothd %s)",
                    self.adapter,
                    "up" if self.watch.available else "down",
                )
                generation = await self.watch.wait_change(generation)
                continue
            now = self.clock.now()
            broadcast = self.scheme().broadcast_at(now, self.tx_power)
            if broadcast is None:
                self._fail("no key material covers now")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            if not self._registered or self._live is None or broadcast.ephemeral_id != self._live.ephemeral_id:
                try:
                    await self._rotate(broadcast)
                except BluezError as exc:
                    self._fail(str(exc))
                    if exc.error_class is ErrorClass.GONE:
                        generation = await self.watch.wait_change(generation, timeout=delay)
                    else:
                        await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                delay = self.backoff_initial
            generation = await self._wait_until(broadcast.valid_until, generation)

    async def _wait_until(self, deadline: float, generation: int) -> int:
        """Sleep (on the agent's clock) until the ID ends, waking early on a BlueZ change or a Release."""
        self._kick.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(max(0.0, deadline - self.clock.now())))
        changed = asyncio.ensure_future(self.watch.wait_change(generation))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait({sleeper, changed, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (sleeper, changed, kicked):
                f.cancel()
            await asyncio.gather(sleeper, changed, kicked, return_exceptions=True)
        if changed.done() and not changed.cancelled():
            self._registered = False  # bluetoothd or the adapter changed: BlueZ no longer holds our advert
            return changed.result()
        return self.watch.generation if self.watch.generation != generation else generation

    async def _rotate(self, broadcast: Broadcast) -> None:
        async with self.scan_pause(self.adapter):
            await self._unregister()
            self._advert.set_payload(broadcast.service_uuid16, broadcast.service_data)
            await call(
                self.bus, adapter_path(self.adapter), ADV_MANAGER, "RegisterAdvertisement", "oa{sv}", [self.path, {}]
            )
        self._registered = True
        self._live = broadcast
        self._rotations += 1
        self._last_rotation_at = self.clock.now()
        log.debug("advertising a new ID on %s until %.0f", self.adapter, broadcast.valid_until)
        if self.on_rotation is not None:
            self.on_rotation(broadcast, self._last_rotation_at)

    async def _unregister(self) -> None:
        if not self._registered:
            return
        self._registered = False
        try:
            await call(self.bus, adapter_path(self.adapter), ADV_MANAGER, "UnregisterAdvertisement", "o", [self.path])
        except BluezError as exc:
            log.debug("unregister on %s: %s", self.adapter, exc)

    def _released(self) -> None:
        self._registered = False
        self._kick.set()

    def _fail(self, reason: str) -> None:
        self._failures += 1
        self._last_error = reason[:200]
        log.warning("advertising on %s failed (%d so far): %s", self.adapter, self._failures, reason)

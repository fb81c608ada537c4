"""Scans one adapter with bleak and hands our three schemes' adverts to the store's aggregator.

Self-healing after Home Assistant's pattern: errors are classified (retry soon, wait for BlueZ, report),
a watchdog restarts a scanner that heard nothing at all for ``watchdog_seconds``, and a bluetoothd restart
or an adapter re-plug (which bleak does not notice) restarts the scan. Everything on the callback path is
cheap: a dict look-up rejects other devices' adverts before any decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError

from agent.ble.bluez import ErrorClass, classify
from agent.ble.watch import BluezWatch
from agent.clock import Clock
from agent.schemes.base import SCHEME_BY_UUID16, DecodedAdvert, SchemeName, uuid128
from agent.schemes.decoder import decode_service_data

log = logging.getLogger(__name__)

Sink = Callable[[SchemeName, bytes, float, int, "int | None", bytes], None]
OUR_UUIDS = frozenset(uuid128(u) for u in SCHEME_BY_UUID16)


@dataclass(frozen=True)
class ScannerHealth:
    adapter: str
    scanning: bool
    last_heard_at: float | None  # agent clock
    callbacks: int
    sightings: int
    rejected: int
    restarts: int
    last_error: str | None


class Scanner:
    def __init__(
        self,
        adapter: str,
        watch: BluezWatch,
        sink: Sink,
        clock: Clock,
        watchdog_seconds: float = 90.0,
        scan_seconds: float = 0.0,
        scan_period_seconds: float = 0.0,
        passive: bool = False,
        backoff_max: float = 30.0,
    ) -> None:
        self.adapter = adapter
        self.watch = watch
        self.sink = sink
        self.clock = clock
        self.watchdog_seconds = watchdog_seconds
        self.scan_seconds = scan_seconds
        self.scan_period_seconds = scan_period_seconds
        self.passive = passive
        self.backoff_max = backoff_max
        self._scanner: BleakScanner | None = None
        self._paused = 0
        self._resume = asyncio.Event()
        self._resume.set()
        self._poke = asyncio.Event()
        self._last_heard_mono: float | None = None
        self._last_heard_at: float | None = None
        self._callbacks = self._sightings = self._rejected = self._restarts = 0
        self._last_error: str | None = None

    def health(self) -> ScannerHealth:
        return ScannerHealth(
            self.adapter,
            self._scanner is not None,
            self._last_heard_at,
            self._callbacks,
            self._sightings,
            self._rejected,
            self._restarts,
            self._last_error,
        )

    # -- the callback path -------------------------------------------------------------------------------------

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self._callbacks += 1
        self._last_heard_mono = asyncio.get_running_loop().time()
        service_data = adv.service_data
        if not service_data:
            return
        now = None
        for uuid, data in service_data.items():
            if uuid not in OUR_UUIDS:
                continue
            decoded = decode_service_data(uuid, data)
            if not isinstance(decoded, DecodedAdvert):
                self._rejected += 1
                log.debug("ignored advert on %s: %s", self.adapter, decoded.reason)
                continue
            if now is None:
                now = self.clock.now()
                self._last_heard_at = now
            tx = decoded.tx_power if decoded.tx_power is not None else adv.tx_power
            self._sightings += 1
            self.sink(decoded.scheme, decoded.ephemeral_id, now, adv.rssi, tx, decoded.metadata)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        delay = 1.0
        generation = self.watch.generation
        try:
            while True:
                if not self.watch.has_adapter(self.adapter):
                    log.warning("scanning on %s waits for the adapter", self.adapter)
                    generation = await self.watch.wait_change(generation)
                    continue
                await self._resume.wait()
                try:
                    await self._start()
                except (BleakError, BleakDBusError, OSError, EOFError) as exc:
                    self._note_error(exc)
                    if _error_class(exc) is ErrorClass.GONE:
                        generation = await self.watch.wait_change(generation, timeout=delay)
                    else:
                        await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                delay = 1.0
                generation = await self._supervise(generation)
                await self._stop()
        finally:
            await self._stop()

    async def _supervise(self, generation: int) -> int:
        """Run until something calls for a restart: BlueZ changed, silence, a pause, or the duty cycle."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._last_heard_mono = started
        while True:
            duty_left = None
            if self.scan_seconds > 0:
                duty_left = self.scan_seconds - (loop.time() - started)
                if duty_left <= 0:
                    await self._stop()
                    await asyncio.sleep(max(0.0, self.scan_period_seconds - self.scan_seconds))
                    return self.watch.generation
            silent_for = loop.time() - (self._last_heard_mono or started)
            if silent_for >= self.watchdog_seconds:
                log.warning("scanner on %s heard nothing for %.0f s: restarting it", self.adapter, silent_for)
                self._restarts += 1
                return self.watch.generation
            if self._scanner is None:  # a pause took the scan down: start it again
                return generation
            timeout = min(self.watchdog_seconds - silent_for, duty_left if duty_left is not None else 1e9)
            self._poke.clear()
            change = asyncio.ensure_future(self.watch.wait_change(generation, timeout=timeout))
            poke = asyncio.ensure_future(self._poke.wait())
            await asyncio.wait({change, poke}, return_when=asyncio.FIRST_COMPLETED)
            for f in (change, poke):
                f.cancel()
            await asyncio.gather(change, poke, return_exceptions=True)
            if self.watch.generation != generation:
                log.info("BlueZ changed: restarting the scanner on %s", self.adapter)
                self._restarts += 1
                return self.watch.generation
            if self._poke.is_set():  # a pause took the scan down: start it again
                return generation

    async def _start(self) -> None:
        kwargs: dict[str, Any] = {"bluez": {"adapter": self.adapter, "filters": {"DuplicateData": True}}}
        if self.passive:
            kwargs = {
                "scanning_mode": "passive",
                "bluez": {
                    "adapter": self.adapter,
                    "or_patterns": [(0, 0x16, uuid.to_bytes(2, "little")) for uuid in SCHEME_BY_UUID16],
                },
            }
        scanner = BleakScanner(self._on_advert, **kwargs)
        await scanner.start()
        self._scanner = scanner
        log.info("scanning on %s (%s)", self.adapter, "passive" if self.passive else "active")

    async def _stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        # After a bluetoothd restart the old scan is gone on the BlueZ side: stop() then fails, harmlessly.
        with contextlib.suppress(BleakError, BleakDBusError, OSError, EOFError, asyncio.TimeoutError):
            await asyncio.wait_for(scanner.stop(), 10)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Stop scanning for the duration (the advertiser's rotation on a legacy controller)."""
        self._paused += 1
        self._resume.clear()
        try:
            await self._stop()
            yield
        finally:
            self._paused -= 1
            if self._paused == 0:
                self._resume.set()
                self._poke.set()

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = f"{exc.__class__.__name__}: {exc}"[:200]
        log.warning("scanner on %s: %s", self.adapter, self._last_error)


def _error_class(exc: BaseException) -> ErrorClass:
    if isinstance(exc, BleakDBusError):
        return classify(exc.dbus_error)
    if isinstance(exc, OSError | EOFError):
        return ErrorClass.GONE
    if "not found" in str(exc):
        return ErrorClass.GONE
    return ErrorClass.RETRY

"""Hear our three service UUIDs with bleak, one scanner per adapter, and keep hearing them.

The hot path (bleak callback → decode → sink) does three dict lookups for anything that is not ours and
never raises: every Device1 update in range comes through here, hostile ones included. A sighting carries
the scheme, ID, time, RSSI, TX power and metadata — never the BLE address.

Self-healing follows Home Assistant's habluetooth: start failures are classified (``agent.ble.errors``) and
retried with backoff, a scanner that has heard nothing for ``watchdog_s`` is restarted, repeated transient
failures power-cycle the adapter, a vanished adapter is waited for, and a new ``org.bluez`` owner (bleak
does not notice one) restarts every scan. An optional duty cycle scans S seconds every P seconds for
battery-powered wearables, and the advertiser can pause an adapter's scan around a rotation.

BlueZ keeps a ``Device1`` for every address it hears until ``TemporaryTimeout`` (30 s) after the last
advert, and bleak mirrors each one in memory (about 4.5 KB, measured by ``bench_flood.py --dbus``). A
neighbour spraying fresh addresses would grow both with its rate (10,000 a second: 300,000 objects, over a
gigabyte). So each scan remembers the devices heard lately, least recent first, and past ``MAX_DEVICES``
asks BlueZ to forget the least recently heard (``RemoveDevice``, no reply awaited). bleak would free its
copies only when BlueZ's ``InterfacesRemoved`` comes back, a round trip behind the thousands of
``InterfacesAdded`` queued ahead of it on a flooded bus, so their number followed BlueZ's lag, not the
bound; the scan drops bleak's copies itself as it sends the request (``_BleakCopies``), which bounds what
a flood adds to the daemon (``FLOOD_GROWTH_BOUND_BYTES``). A real peer repeats its address every advert, so
it sits at the recent end; if a flood pushes it out anyway, its next advert after BlueZ has removed it
makes a new object, heard as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.bluezdbus.manager import get_global_bluez_manager
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import Message, MessageFlag
from dbus_fast.aio import MessageBus

from agent.aio import first, within
from agent.backoff import backoff_delay
from agent.ble.adapters import set_powered
from agent.ble.bluez_watch import BluezState, BluezWatch, BusLost
from agent.ble.errors import ErrorKind, classify, describe
from agent.ble.names import ADAPTER1, ADAPTER_PREFIX, BLUEZ, REMOVE_DEVICE
from agent.clock import Clock, SystemClock
from agent.schemes.base import SERVICE_UUID16, DecodedAdvert, uuid128
from agent.schemes.decoder import decode_service_data
from agent.sightings import RawSighting

log = logging.getLogger(__name__)

Sink = Callable[[RawSighting], None]
OUR_UUIDS: tuple[tuple[str, int], ...] = tuple((uuid128(u), u) for u in SERVICE_UUID16.values())
OR_PATTERNS = [
    OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, u.to_bytes(2, "little")) for u in SERVICE_UUID16.values()
]
RSSI_RANGE = range(-127, 21)  # HCI's valid RSSI
RSSI_NOT_AVAILABLE = 127  # HCI's "no measurement" (some controllers, btvirt): presence without a distance
RSSI_UNKNOWN = -127  # what we store for it: the weakest value, so it proves presence but adds no risk
TX_RANGE = range(-127, 128)
# Devices heard within DEVICE_MEMORY_S that a scan lets BlueZ (and bleak) keep: ~9 MB of bleak's copies.
# A packed station hall is a few hundred phones plus their watches and earbuds, well below it.
MAX_DEVICES = 2_000
DEVICE_MEMORY_S = 60.0  # past BlueZ's default TemporaryTimeout (30 s): by then it dropped the device itself
# RemoveDevice requests not yet written to the bus: a bus too busy to take them must not queue them in our
# memory for ever. One queued costs ~0.5 KB (REMOVAL_BYTES) against ~5 KB for the device it frees, so the
# bound is generous (~2 MB); past it a device is left to BlueZ's own timeout (counted in ``devices_left``).
MAX_REMOVALS_IN_FLIGHT = 4096
# What a flood of any rate adds to the daemon's memory while the bus takes our requests (a device left to
# BlueZ's timeout, counted in ``devices_left``, is outside it for those 30 s): MAX_DEVICES of bleak's copies
# (its Device1 properties with the strings and bytes dbus_fast decoded, the copy it hands the callback kept
# with a BLEDevice and an AdvertisementData, and our entry: ~3.9 KB per device traced by tracemalloc, and
# 4.8-5.0 KB of RSS per device the daemon held in bench_flood.py --dbus, everything else included), the
# removals queued, and slack for what that bench did not reach (a faster bus: more messages in decoding, a
# fuller store minute, arenas the allocator keeps). bench_flood.py --dbus prints the growth against it
# (10,000 fakes/s asked, 2,400-2,600/s carried: +9.6 and +10.0 MB, half the bound).
DEVICE_BYTES = 5_000
REMOVAL_BYTES = 512
FLOOD_SLACK_BYTES = 8_000_000
FLOOD_GROWTH_BOUND_BYTES = MAX_DEVICES * DEVICE_BYTES + MAX_REMOVALS_IN_FLIGHT * REMOVAL_BYTES + FLOOD_SLACK_BYTES


@dataclass(frozen=True)
class DutyCycle:
    """Scan ``scan_s`` seconds at the start of every ``period_s``; continuous when either is 0."""

    scan_s: float = 0.0
    period_s: float = 0.0

    @property
    def continuous(self) -> bool:
        return self.scan_s <= 0 or self.period_s <= 0 or self.scan_s >= self.period_s

    def is_on(self, t: float) -> bool:
        return self.continuous or (t % self.period_s) < self.scan_s

    def next_change(self, t: float) -> float:
        if self.continuous:
            return math.inf
        phase = t % self.period_s
        start = t - phase
        return start + self.scan_s if phase < self.scan_s else start + self.period_s


class _BleakCopies:
    """bleak's copies of the Device1 objects one scan hears, so a device we ask BlueZ to forget is dropped
    from them at once rather than a bus round trip later.

    bleak keeps two, neither behind a public API: its BlueZ manager's ``_properties`` (every object's
    properties, path -> interface -> dict) and the scan backend's ``seen_devices`` (path -> BLEDevice and
    AdvertisementData); bleak 3.x tolerates a path missing from both when the InterfacesRemoved or a late
    PropertiesChanged arrives (it ignores the KeyError). A bleak that renames them leaves both tables
    untouched (the flood bound is then BlueZ's to keep, as before) and reports no copies, which
    tests/ble/test_ble_flood.py catches.
    """

    def __init__(self, seen: dict[str, object], properties: dict[str, object]) -> None:
        self._seen = seen
        self._properties = properties

    @classmethod
    def of(cls, scanner: BleakScanner, manager: object) -> _BleakCopies | None:
        seen = getattr(getattr(scanner, "_backend", None), "seen_devices", None)
        properties = getattr(manager, "_properties", None)
        if type(seen) is not dict or type(properties) is not dict:
            log.warning("this bleak keeps its device tables elsewhere: a flood of addresses is bounded by BlueZ")
            return None
        return cls(seen, properties)

    def __len__(self) -> int:
        return len(self._seen)

    def forget(self, path: str) -> None:
        self._seen.pop(path, None)
        self._properties.pop(path, None)


@dataclass(frozen=True)
class ScannerHealth:
    adapter: str
    present: bool
    scanning: bool
    passive: bool
    last_heard_at: float | None
    last_sighting_at: float | None
    sightings: int
    rejected: int
    ignored: int
    sink_errors: int
    devices_removed: int  # Device1 objects we asked BlueZ to forget past MAX_DEVICES (a flood of addresses)
    devices_left: int  # ...and those left to BlueZ's timeout because the bus was not taking our requests
    devices_cached_max: int  # the most Device1 copies bleak held for this scan (the flood bound's measure)
    starts: int
    restarts: int
    watchdog_restarts: int
    power_cycles: int
    failures: int
    last_error: str | None
    note: str | None


class _AdapterScan:
    def __init__(
        self,
        adapter: str,
        sink: Sink,
        clock: Clock,
        io: Clock,
        duty: DutyCycle,
        passive: bool,
        watchdog_s: float,
        backoff_max_s: float,
        escalate_after: int,
        call_timeout_s: float,
    ) -> None:
        self.adapter = adapter
        self._sink = sink
        self._clock = clock
        self._io = io
        self._duty = duty
        self._passive = passive
        self._watchdog_s = watchdog_s
        self._backoff_max = backoff_max_s
        self._escalate_after = escalate_after
        self._timeout = call_timeout_s
        self._scanner: BleakScanner | None = None
        self._bus: MessageBus | None = None
        self._devices: OrderedDict[str, float] = OrderedDict()  # Device1 path -> io time last heard
        self._copies: _BleakCopies | None = None  # while scanning (bleak's tables are the scan's)
        self.devices_cached_max = 0
        self._started_generation = -1
        self._started_io = 0.0
        self._heard_io = 0.0
        self._retry_at = -math.inf
        self._pauses = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unplanned = False
        self._present = False
        self.heard_at: float | None = None
        self.sighting_at: float | None = None
        self.sightings = 0
        self.rejected = 0
        self.ignored = 0
        self.sink_errors = 0
        self.devices_removed = 0
        self.devices_left = 0
        self._removals_in_flight = 0
        self.starts = 0
        self.restarts = 0
        self.watchdog_restarts = 0
        self.power_cycles = 0
        self.failures = 0
        self.consecutive = 0
        self.last_error: str | None = None
        self.note: str | None = None

    # ---- the hot path ----------------------------------------------------------------------------------

    def on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        try:
            now = self._clock.now()
            self._heard_io = io_now = self._io.now()
            self.heard_at = now
            details = device.details
            if type(details) is dict:
                path = details.get("path")
                if type(path) is str:
                    self._track(path, io_now)
            sd = adv.service_data
            if not sd:
                self.ignored += 1
                return
            ours = False
            for uuid, uuid16 in OUR_UUIDS:
                data = sd.get(uuid)
                if data is not None:
                    ours = True
                    self._take(uuid16, data, adv, now)
            if not ours:
                self.ignored += 1
        except Exception:  # hostile or broken input must never reach bleak's signal handler
            self.rejected += 1
            log.debug("advert callback failed", exc_info=True)

    def _track(self, path: str, io_now: float) -> None:
        """Remember ``path`` as heard now; past MAX_DEVICES recent ones, have BlueZ forget the oldest."""
        devices = self._devices
        if path in devices:
            devices.move_to_end(path)
            devices[path] = io_now
            return
        devices[path] = io_now
        forget_before = io_now - DEVICE_MEMORY_S
        while devices:
            oldest, heard = next(iter(devices.items()))
            if heard >= forget_before and len(devices) <= MAX_DEVICES:
                break
            devices.popitem(last=False)
            if heard >= forget_before:
                self._remove_device(oldest)
        cached = len(self._copies) if self._copies is not None else 0
        if cached > self.devices_cached_max:
            self.devices_cached_max = cached

    def _remove_device(self, path: str) -> None:
        bus = self._bus
        if bus is None or not bus.connected:
            return
        if self._removals_in_flight >= MAX_REMOVALS_IN_FLIGHT:
            # bleak keeps its copy: were it dropped while BlueZ keeps the device, a real peer's next
            # adverts (PropertiesChanged on an object bleak no longer knows) would never reach us
            self.devices_left += 1
            return
        if self._copies is not None:
            self._copies.forget(path)
        self._removals_in_flight += 1
        sent = bus.send(
            Message(
                destination=BLUEZ,
                path=f"{ADAPTER_PREFIX}{self.adapter}",
                interface=ADAPTER1,
                member=REMOVE_DEVICE,
                signature="o",
                body=[path],
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )
        sent.add_done_callback(self._removal_sent)
        self.devices_removed += 1

    def _removal_sent(self, sent: asyncio.Future[None]) -> None:
        """Written (or lost with a dying connection, which frees nothing, harmlessly: BlueZ's timeout does)."""
        self._removals_in_flight -= 1
        if not sent.cancelled():
            sent.exception()

    def _take(self, uuid16: int, data: bytes, adv: AdvertisementData, now: float) -> None:
        decoded = decode_service_data(uuid16, data)
        rssi = RSSI_UNKNOWN if adv.rssi == RSSI_NOT_AVAILABLE else adv.rssi
        if type(decoded) is not DecodedAdvert or type(rssi) is not int or rssi not in RSSI_RANGE:
            self.rejected += 1
            return
        tx = decoded.tx_power if decoded.tx_power is not None else adv.tx_power
        if tx is not None and (type(tx) is not int or tx not in TX_RANGE):
            tx = None
        sighting = RawSighting(decoded.scheme, decoded.ephemeral_id, now, rssi, tx, decoded.metadata, self.adapter)
        try:
            self._sink(sighting)
        except Exception:  # the store's problem must not silence the radio; count it, health shows it
            self.sink_errors += 1
            if self.sink_errors == 1 or self.sink_errors % 1000 == 0:
                log.warning("sighting sink failed (%d so far)", self.sink_errors, exc_info=True)
            return
        self.sightings += 1
        self.sighting_at = now

    # ---- control ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        self._pauses += 1
        self._wake.set()
        try:
            try:
                await within(self._io, self._timeout, self._idle.wait())
            except TimeoutError:
                log.warning("scan on %s did not pause in time", self.adapter)
            yield
        finally:
            self._pauses -= 1
            self._wake.set()

    def health(self) -> ScannerHealth:
        return ScannerHealth(
            adapter=self.adapter,
            present=self._present,
            scanning=self._scanner is not None,
            passive=self._passive and self._scanner is not None,
            last_heard_at=self.heard_at,
            last_sighting_at=self.sighting_at,
            sightings=self.sightings,
            rejected=self.rejected,
            ignored=self.ignored,
            sink_errors=self.sink_errors,
            devices_removed=self.devices_removed,
            devices_left=self.devices_left,
            devices_cached_max=self.devices_cached_max,
            starts=self.starts,
            restarts=self.restarts,
            watchdog_restarts=self.watchdog_restarts,
            power_cycles=self.power_cycles,
            failures=self.failures,
            last_error=self.last_error,
            note=self.note,
        )

    async def run(self, watch: BluezWatch) -> None:
        self._bus = watch.bus
        self._devices.clear()  # a new connection: BlueZ's objects are bleak's to list afresh
        try:
            while True:
                self._wake.clear()
                state = watch.state
                if state.bus_lost:
                    raise BusLost("D-Bus connection lost")
                self._present = state.ready(self.adapter)
                if self.starts and (not self._present or state.generation != self._started_generation):
                    self._unplanned = True  # whatever stopped the scan, the next start is a recovery
                io_now = self._io.now()
                want = (
                    self._pauses == 0
                    and self._present
                    and self._duty.is_on(self._clock.now())
                    and io_now >= self._retry_at
                )
                if self._scanner is not None:
                    if (
                        state.generation != self._started_generation
                        or not self._present
                        or self.adapter in state.unpowered
                    ):
                        log.warning("BlueZ or %s went away under the scan; restarting it", self.adapter)
                        self._unplanned = True
                        await self._stop()
                    elif not want:
                        await self._stop()
                    elif io_now - max(self._heard_io, self._started_io) >= self._watchdog_s:
                        log.warning("scan on %s silent for %.0f s; restarting it", self.adapter, self._watchdog_s)
                        self.watchdog_restarts += 1
                        self._unplanned = True
                        await self._stop()
                if self._scanner is None and want:
                    await self._start(watch, state)
                if self._scanner is None:
                    self._idle.set()
                await self._wait_next(watch, state)
        finally:
            await self._stop()

    async def _start(self, watch: BluezWatch, state: BluezState) -> None:
        passive = self._passive
        if passive:
            scanner = BleakScanner(
                self.on_advert, scanning_mode="passive", bluez={"adapter": self.adapter, "or_patterns": OR_PATTERNS}
            )
        else:
            scanner = BleakScanner(self.on_advert, bluez={"adapter": self.adapter, "filters": {"DuplicateData": True}})
        self._idle.clear()
        try:
            await within(self._io, self._timeout, scanner.start())
        except Exception as exc:  # classified below; the loop retries
            self._idle.set()
            await self._start_failed(exc, watch, passive)
            return
        self._scanner = scanner
        try:  # bleak's own manager, which the scan has just connected: this returns it at once
            self._copies = _BleakCopies.of(scanner, await within(self._io, self._timeout, get_global_bluez_manager()))
        except Exception as exc:  # the scan runs regardless; BlueZ's timeout then bounds a flood, as before
            log.warning("bleak's device tables on %s out of reach (%s)", self.adapter, describe(exc))
        self._started_generation = state.generation
        self._started_io = self._io.now()
        self.starts += 1
        self.consecutive = 0
        recovered = self._unplanned
        if recovered:
            self.restarts += 1
            self._unplanned = False
        # resuming after a rotation's pause is routine: only the first start and recoveries reach the journal
        log.log(
            logging.INFO if self.starts == 1 or recovered else logging.DEBUG,
            "scanning on %s%s",
            self.adapter,
            " (passive)" if passive else "",
        )

    async def _start_failed(self, exc: Exception, watch: BluezWatch, passive: bool) -> None:
        kind = classify(exc)
        self.last_error = describe(exc)
        if passive and kind is ErrorKind.UNSUPPORTED:
            self._passive = False
            self.note = "passive scanning unavailable (BlueZ needs --experimental); scanning actively"
            log.warning("%s: %s", self.adapter, self.note)
            self._wake.set()  # try again at once, actively
            return
        self.failures += 1
        self.consecutive += 1
        self._unplanned = True
        self._retry_at = self._io.now() + backoff_delay(self.consecutive, maximum=self._backoff_max)
        log.warning("scan on %s failed to start (%s, attempt %d)", self.adapter, self.last_error, self.consecutive)
        if kind is ErrorKind.NOT_READY or (kind is ErrorKind.TRANSIENT and self.consecutive >= self._escalate_after):
            await self._power_cycle(watch, off_first=kind is not ErrorKind.NOT_READY)

    async def _power_cycle(self, watch: BluezWatch, off_first: bool) -> None:
        """The escalation step: Powered off and on again (or just on, for an adapter found powered off)."""
        try:
            if off_first:
                await within(self._io, self._timeout, set_powered(watch.bus, self.adapter, False))
            await within(self._io, self._timeout, set_powered(watch.bus, self.adapter, True))
            self.power_cycles += 1
            log.warning("power-cycled %s", self.adapter)
        except Exception as exc:  # best effort: the next start attempt reports what is still wrong
            log.warning("could not power-cycle %s (%s)", self.adapter, describe(exc))

    async def _stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        self._copies = None
        if scanner is not None:
            try:
                await within(self._io, self._timeout, scanner.stop())
            except Exception as exc:  # a scan whose BlueZ is gone cannot be stopped cleanly; it is over anyway
                log.debug("stopping the scan on %s: %s", self.adapter, describe(exc))
        self._idle.set()

    async def _wait_next(self, watch: BluezWatch, state: BluezState) -> None:
        waits = {"wake": self._wake.wait(), "bluez": watch.wait_until(lambda s: s != state)}
        io_now, now = self._io.now(), self._clock.now()
        io_deadlines = [self._retry_at] if self._scanner is None and self._retry_at > io_now else []
        if self._scanner is not None:
            io_deadlines.append(max(self._heard_io, self._started_io) + self._watchdog_s)
        if io_deadlines:
            waits["io"] = self._io.sleep(max(0.0, min(io_deadlines) - io_now))
        change = self._duty.next_change(now)
        if change != math.inf:
            waits["duty"] = self._clock.sleep(max(0.0, change - now))
        await first(**waits)


class Scanner:
    """Scans on several adapters at once (one bleak scanner each, sharing bleak's connection)."""

    def __init__(
        self,
        adapters: Sequence[str],
        sink: Sink,
        clock: Clock,
        *,
        io_clock: Clock | None = None,
        duty: DutyCycle = DutyCycle(),
        passive: bool = False,
        watchdog_s: float = 90.0,
        backoff_max_s: float = 30.0,
        escalate_after: int = 3,
        call_timeout_s: float = 10.0,
    ) -> None:
        if not adapters:
            raise ValueError("scan on at least one adapter")
        io = io_clock or SystemClock()
        self._scans = {
            a: _AdapterScan(
                a, sink, clock, io, duty, passive, watchdog_s, backoff_max_s, escalate_after, call_timeout_s
            )
            for a in dict.fromkeys(adapters)
        }

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._scans)

    def paused(self, adapter: str) -> AbstractAsyncContextManager[None]:
        scan = self._scans.get(adapter)
        return scan.paused() if scan is not None else contextlib.nullcontext()

    def health(self) -> tuple[ScannerHealth, ...]:
        return tuple(s.health() for s in self._scans.values())

    async def run(self, watch: BluezWatch) -> None:
        """Until cancelled; raises BusLost when the D-Bus connection dies (rebuild and call again)."""
        tasks = [asyncio.ensure_future(s.run(watch)) for s in self._scans.values()]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

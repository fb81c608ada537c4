"""The whole BLE edge of one agent: a D-Bus connection, the BlueZ watch, an advertiser and the scanners.

``BleEdge.run`` owns the connection. If the connection dies (the system bus restarting, a test killing its
private bus) it builds a new one and carries on with the same advertiser and scanner objects, so their
counters and the sightings already handed to the sink survive. Health is a frozen snapshot the daemon
publishes; it never contains an ID or an address.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from agent.aio import first, within
from agent.backoff import backoff_delay
from agent.ble.adapters import choose_adapters
from agent.ble.advertiser import Advertiser, AdvertiserHealth
from agent.ble.bluez_watch import BluezState, BluezWatch, BusLost
from agent.ble.errors import describe
from agent.ble.scanner import DutyCycle, Scanner, ScannerHealth, Sink
from agent.ble.settings import BleSettings
from agent.clock import Clock, SystemClock
from agent.schemes.base import Scheme

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterHealth:
    """One adapter as the edge sees it; the daemon copies these lines into its status snapshot."""

    name: str
    present: bool
    advertising: bool
    scanning: bool
    last_heard_at: float | None = None
    devices_removed: int = 0  # BlueZ devices forgotten on our request past the scanner's MAX_DEVICES
    devices_left: int = 0  # ...and those left to BlueZ's timeout, the bus not taking our requests
    devices_cached_max: int = 0  # the most Device1 copies bleak held for the scan: MAX_DEVICES bounds it


@dataclass(frozen=True)
class BleHealth:
    bluez_running: bool
    bluez_generation: int
    connections: int
    advertiser: AdvertiserHealth | None
    scanners: tuple[ScannerHealth, ...]
    last_error: str | None

    def adapter_statuses(self) -> tuple[AdapterHealth, ...]:
        """One line per adapter in use, advertiser's first: what the daemon's status snapshot shows per adapter."""
        names = dict.fromkeys(
            ([self.advertiser.adapter] if self.advertiser else []) + [s.adapter for s in self.scanners]
        )
        scans = {s.adapter: s for s in self.scanners}
        out = []
        for name in names:
            scan = scans.get(name)
            advertising = bool(self.advertiser and self.advertiser.adapter == name and self.advertiser.advertising)
            out.append(
                AdapterHealth(
                    name=name,
                    present=scan.present if scan else self.bluez_running,
                    advertising=advertising,
                    scanning=bool(scan and scan.scanning),
                    last_heard_at=scan.last_heard_at if scan else None,
                    devices_removed=scan.devices_removed if scan else 0,
                    devices_left=scan.devices_left if scan else 0,
                    devices_cached_max=scan.devices_cached_max if scan else 0,
                )
            )
        return tuple(out)


class BleEdge:
    def __init__(
        self,
        settings: BleSettings,
        scheme: Scheme,
        sink: Sink,
        clock: Clock,
        *,
        io_clock: Clock | None = None,
        bus_address: str | None = None,
    ) -> None:
        self.settings = settings
        self._scheme = scheme
        self._sink = sink
        self._clock = clock
        self._io = io_clock or SystemClock()
        self._bus_address = bus_address
        self._watch: BluezWatch | None = None
        self.advertiser: Advertiser | None = None
        self.scanner: Scanner | None = None
        self._connections = 0
        self._last_error: str | None = None
        self._generation_base = 0

    def set_scheme(self, scheme: Scheme) -> None:
        self._scheme = scheme
        if self.advertiser is not None:
            self.advertiser.set_scheme(scheme)

    def health(self) -> BleHealth:
        state = self._watch.state if self._watch else None
        return BleHealth(
            bluez_running=bool(state and state.owner),
            bluez_generation=self._generation_base + (state.generation if state else 0),
            connections=self._connections,
            advertiser=self.advertiser.health() if self.advertiser else None,
            scanners=self.scanner.health() if self.scanner else (),
            last_error=(self._watch.last_error if self._watch else None) or self._last_error,
        )

    async def run(self) -> None:
        """Until cancelled: connect, wait for BlueZ, advertise and scan; reconnect if the bus dies."""
        attempt = 0
        while True:
            bus = None
            try:
                bus = MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM)
                # authentication and Hello are bus-daemon calls too: a daemon that accepts the socket and
                # then stops answering must not hold the edge for ever
                await within(self._io, self.settings.call_timeout_s, bus.connect())
            except Exception as exc:  # no bus yet (early boot, a test restarting it, a hung daemon): try again
                if bus is not None:
                    with contextlib.suppress(Exception):
                        bus.disconnect()
                attempt += 1
                self._last_error = describe(exc)
                log.warning("cannot connect to the system bus (%s); retrying", self._last_error)
                await self._io.sleep(backoff_delay(attempt, maximum=30.0))
                continue
            attempt = 0
            self._connections += 1
            try:
                await self._run_on(bus)
            except BusLost as exc:
                self._last_error = str(exc)
                log.warning("%s; reconnecting", exc)
            except Exception as exc:  # a bug must not end the BLE edge; log it fully and start over
                self._last_error = describe(exc)
                log.exception("BLE edge failed; restarting it")
            finally:
                if self._watch is not None:
                    self._generation_base += self._watch.state.generation
                    self._watch.close()
                    self._watch = None
                with contextlib.suppress(Exception):
                    bus.disconnect()
            await self._io.sleep(1.0)

    async def _run_on(self, bus: MessageBus) -> None:
        watch = BluezWatch(bus, self._io, self.settings.call_timeout_s)
        await watch.start()
        self._watch = watch
        if self.scanner is None:
            self._build(await watch.wait_until(lambda s: s.owner is not None and bool(s.adapters)))
        assert self.scanner is not None
        parts = {"scan": self.scanner.run(watch)}
        if self.advertiser is not None:
            parts["advertise"] = self.advertiser.run(bus, watch)
        await first(**parts)

    def _build(self, state: BluezState) -> None:
        s = self.settings
        adv, scans = choose_adapters(s.advertise_adapter, s.scan_adapters, state.adapters)
        log.info("advertising on %s, scanning on %s", adv or "no adapter", ", ".join(scans))
        self.scanner = Scanner(
            scans,
            self._sink,
            self._clock,
            io_clock=self._io,
            duty=DutyCycle(s.scan_seconds, s.scan_period_seconds),
            passive=s.passive,
            watchdog_s=s.watchdog_s,
            call_timeout_s=s.call_timeout_s,
        )
        if adv is not None:
            self.advertiser = Advertiser(
                adv,
                self._scheme,
                s.tx_power,
                self._clock,
                io_clock=self._io,
                pauser=self.scanner,
                include_tx_power=s.include_tx_power,
                call_timeout_s=s.call_timeout_s,
            )

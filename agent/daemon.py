"""``proxitrace run``: one event loop wiring the advertiser, the scanners, the store and the chores.

Each part runs as a supervised task (a dying task is logged, counted and restarted), the state operators
need is published as a status file, and systemd hears READY once the first advert is registered and a
scan has started, WATCHDOG only while the loop turns and a scanner has heard something recently.
SIGTERM flushes the pending sightings, unregisters the advert and closes the store.

The radio, the key schedule, retention and matching wait for a clock they can trust (``agent.timetrust``):
until then the daemon is READY for systemd ("waiting for a synchronised clock") but advertises nothing and
records nothing. A wall-clock jump re-derives the live ID and closes the open sighting windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.ble.edge import BleEdge, BleHealth
from agent.calibration import Calibration
from agent.clock import Clock
from agent.config import (
    AgentConfig,
    BleSection,
    ble_settings,
    device_calibration,
    insecure_transport_warning,
    risk_settings,
    sync_settings,
    wearable_settings,
)
from agent.feedback import DeviceFacts
from agent.keys import KeyRing
from agent.notify import run_hook
from agent.protocol.wire import RiskVerdict
from agent.schemes.base import Scheme, SchemeName
from agent.sdnotify import Notifier
from agent.sightings import RawSighting
from agent.status import AdapterStatus, AgentStatus, Brief, TaskStatus, brief_status, write_status
from agent.store import SightingAggregator, Store
from agent.supervisor import Supervisor
from agent.sync.errors import SyncError, Unregistered
from agent.sync.settings import PENDING_REPORT, SyncSettings
from agent.timesource import TimeSource, time_source_for
from agent.timetrust import Jump, TimeWatch
from agent.wearable import GpioPanel, Panel, TanInbox, WearableError, WearableService, WearableSettings

if TYPE_CHECKING:
    from agent.sync.service import SyncOutcome, SyncService

log = logging.getLogger(__name__)

STATUS_SECONDS = 5.0
STARTUP_STATUS_SECONDS = 0.25  # until READY: systemd and the test-bed learn of it at once, not 5 s later
STARTUP_WINDOW_SECONDS = 60.0  # ...but a daemon that cannot get ready (no adapter) goes back to the slow pace
KEY_CHECK_SECONDS = 600.0
RETENTION_SECONDS = 86_400.0
TIME_CHECK_SECONDS = 2.0  # real seconds between looks at the clocks: how soon a sync or a jump is acted on
WAITING_FOR_TIME = "waiting for a synchronised clock: not advertising, recording or matching"


@dataclass
class DaemonState:
    started_at: float
    last_sync_at: float | None = None
    last_sync_ok: bool | None = None
    exposure: str = "none"
    ready: bool = False
    needs_registration: bool = False
    registering_again: bool = False


class Daemon:
    def __init__(
        self,
        config: AgentConfig,
        state_dir: Path,
        clock: Clock,
        adapter: str | None = None,
        notifier: Notifier | None = None,
        time_source: TimeSource | None = None,
        panel: Panel | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.clock = clock
        self.adapter_override = adapter
        self.notifier = notifier or Notifier()
        self.time_source = time_source or time_source_for(clock)
        self.time_watch = TimeWatch(config.agent.accept_unsynchronised_clock_testbed)
        self._trusted = asyncio.Event()
        self.scheme = SchemeName(config.agent.scheme)
        self.sync_settings = sync_settings(config) if config.backend.url else None  # refuses a bad URL at start
        warning = insecure_transport_warning(config)
        if warning:
            log.warning("%s", warning)
        self.store = Store.open(state_dir, move_aside_corrupt=True)  # first: a refused start is one line
        self._notes: tuple[str, ...] = ()
        if self.store.moved_aside is not None:
            self._notes = (
                f"the store failed its integrity check at start; moved aside to {self.store.moved_aside.name}, "
                "started empty",
            )
        self.calibration: Calibration = device_calibration(config, state_dir, adapter)
        log.info(
            "calibration: TX %d dBm, RSSI correction %.1f dB (%s)",
            self.calibration.tx_power,
            self.calibration.rssi_correction,
            self.calibration.source,
        )
        self.aggregator = SightingAggregator()
        self.keys = KeyRing(self.store, self.scheme, config.agent.retention_days)
        self.state = DaemonState(started_at=clock.now())
        self.supervisor = Supervisor(clock)
        self._stop = asyncio.Event()
        self.edge: BleEdge | None = None
        self._scheme_now: Scheme | None = None
        self._rate_mark = (self.state.started_at, 0)
        self._background: set[asyncio.Task[object]] = set()
        self._brief: Brief | None = None  # the last published ``status --brief``, for the hook's environment
        self.wearable_settings = wearable_settings(config)
        self._panel = panel  # a test double on a rig without GPIO; else opened from [wearable] in run()
        self.wearable: WearableService | None = None
        if any(r.notify for r in self.store.exposures()):
            self.state.exposure = "exposed"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            ble = self.config.ble
            if self.adapter_override:
                ble = replace(ble, advertise_adapter=self.adapter_override, scan_adapters=(self.adapter_override,))
            self.keys.calibration_confidence = self.calibration.confidence
            self._look_at_time()
            self.supervisor.add("time", self._time_loop)
            self.supervisor.add("ble", self._when_trusted(functools.partial(self._radio, ble)))
            self.supervisor.add("flusher", self._flusher)
            self.supervisor.add("keys", self._when_trusted(self._key_roller))
            self.supervisor.add("retention", self._when_trusted(self._retention))
            self.supervisor.add("status", self._status_loop)
            if self.sync_settings is not None:
                self.supervisor.add("sync", self._when_trusted(functools.partial(self._sync, self.sync_settings)))
            if self.wearable_settings is not None or self._panel is not None:
                self.wearable = self._wearable(self.wearable_settings or WearableSettings())
                self.supervisor.add("wearable", self.wearable.run)
            self.supervisor.start()
            log.info(
                "agent running: scheme %s, advertising on %s, scanning on %s",
                self.scheme.value,
                ble.advertise_adapter,
                ", ".join(ble.scan_adapters),
            )
            await self._stop.wait()
            log.info("stopping")
        finally:
            await self.supervisor.stop()
            if self._panel is not None:
                self._panel.close()
            self.store.flush(self.aggregator)
            if self.store.write_error is not None:
                log.error(
                    "stopping with %d sighting windows that could not be written (%s)",
                    self.store.unwritten_windows,
                    self.store.write_error,
                )
            self._publish_status()
            self.store.close()
            self.notifier.stopping()

    def stop(self) -> None:
        self._stop.set()

    def _when_trusted(self, factory: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``factory`` started only once the clock is trusted: IDs, windows, retention and matching all
        depend on the date, and a wrong date is worse than none."""

        async def gated() -> None:
            await self._trusted.wait()
            await factory()

        return gated

    async def _radio(self, ble: BleSection) -> None:
        """Derive today's keys and run the BLE edge (built once; a restart keeps its counters)."""
        self.keys.ensure(self.clock.now())
        self._scheme_now = self.keys.scheme()
        if self.edge is None:
            self.edge = BleEdge(
                ble_settings(ble, self.calibration.tx_power), self._scheme_now, self._record, self.clock
            )
        else:
            self.edge.set_scheme(self._scheme_now)
        await self.edge.run()

    def _record(self, sighting: RawSighting) -> None:
        """The edge's sink: a sighting is kept only while the clock that stamped it is trusted."""
        if self._trusted.is_set():
            self.aggregator.add_sighting(sighting)

    async def _time_loop(self) -> None:
        while True:
            await asyncio.sleep(TIME_CHECK_SECONDS)
            self._look_at_time()

    def _look_at_time(self) -> None:
        """One look at the clocks: open or close the gate, and act on a jump."""
        was = self.time_watch.state
        jump = self.time_watch.observe(self.time_source.facts())
        state = self.time_watch.state
        assert state is not None
        if jump is not None and was is not None and was.trusted:
            self._jumped(jump)
        if state.trusted and not self._trusted.is_set():
            self._trusted.set()
            log.info("time %s: advertising, recording and matching", state.trust.value)
        elif not state.trusted and (was is None or was.trusted):
            self._trusted.clear()
            log.warning("time %s: %s", state.trust.value, WAITING_FOR_TIME)

    def _jumped(self, jump: Jump) -> None:
        """The wall clock was stepped: what was heard so far belongs to the old time base, the live ID to
        the old time. Close the windows (stamped up to the last good time), derive the ID for the new time."""
        closed = self.aggregator.close_windows()
        self.store.flush(self.aggregator)
        if self.edge is not None:
            self.keys.ensure(self.clock.now())
            self._scheme_now = self.keys.scheme()
            self.edge.set_scheme(self._scheme_now)
        log.warning(
            "clock jumped %+.0f s: %d open sighting windows closed at the last good time, live ID re-derived",
            jump.seconds,
            closed,
        )

    async def _sync(self, settings: SyncSettings) -> None:
        """Pull and match lists (DP-3T, GAEN) or keep EBIDs and ask for the risk verdict (EBID), with backoff."""
        correction = self.calibration.rssi_correction
        from agent.sync.client import open_session  # aiohttp and the list pipeline: only with a backend
        from agent.sync.service import SyncService

        async with open_session(settings) as session:
            service = SyncService(session, settings, self.clock, self.store)
            dummies = asyncio.create_task(service.run_dummy_traffic(self.scheme)) if settings.dummy_traffic else None
            try:
                if self.scheme is SchemeName.EBID:
                    await service.run_ebid(functools.partial(self._on_risk_verdict, service))
                else:
                    self.store.flush(self.aggregator)
                    await service.run(self.scheme, risk_settings(self.config), correction, self._on_sync)
            finally:
                if dummies is not None:
                    dummies.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await dummies

    def _on_sync(self, result: SyncOutcome | SyncError, next_in: float) -> None:
        self.state.last_sync_at = self.clock.now()
        self.state.last_sync_ok = not isinstance(result, SyncError)
        if not isinstance(result, SyncError) and result.notify:
            self._exposed(len([r for r in self.store.exposures() if r.notify]))

    def _on_risk_verdict(self, service: SyncService, result: RiskVerdict | SyncError, next_in: float) -> None:
        """After each EBID round: the batch may have changed (an erasure leaves none, a re-registration
        brings a new one), so the advertiser hears of it now, not at the next key check. An erased device
        with a capability is registering again (``next_in`` says when); without one it needs a person."""
        self.state.last_sync_at = self.clock.now()
        self.state.last_sync_ok = not isinstance(result, SyncError)
        erased = isinstance(result, RiskVerdict) and result.must_register_again
        can_again = service.capability() is not None
        self.state.registering_again = erased and can_again
        self.state.needs_registration = isinstance(result, Unregistered) or (erased and not can_again)
        self._refresh_scheme()
        if isinstance(result, RiskVerdict) and result.at_risk:
            self._exposed(1)

    def _exposed(self, days: int) -> None:
        if self.state.exposure == "exposed":
            return
        self.state.exposure = "exposed"
        log.warning("exposure notification: contact with a reported case on %d day(s); see proxitrace exposures", days)
        self._run_hook("exposed", days)

    def _run_hook(self, event: str, days_exposed: int = 0) -> None:
        """The notify hook, in the background, with the last ``status --brief`` facts in its environment."""
        facts = self._brief.environment() if self._brief else None
        hook = run_hook(self.config.notify.hook, event, days_exposed, self.config.notify.hook_timeout_seconds, facts)
        task = asyncio.get_running_loop().create_task(hook)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wearable(self, settings: WearableSettings) -> WearableService:
        """The button, LED and TAN inbox; a GPIO line that cannot be had stops the start with one line."""
        if self._panel is None and settings.chip is not None:
            self._panel = GpioPanel.open(settings)
        inbox = TanInbox(settings.tan_dir) if settings.tan_dir is not None else None
        return WearableService(settings, self._panel, inbox, self._device_facts, self._send_report, self._report_event)

    def _device_facts(self) -> DeviceFacts:
        """What the LED shows, from what the daemon knows (the radio's adapters once the clock allows it)."""
        health = self.edge.health() if self.edge else None
        return DeviceFacts(
            adapter_present=health is None or any(a.present for a in health.adapter_statuses()),
            time_trusted=self._trusted.is_set(),
            sync_failing=self.state.last_sync_ok is False,
            exposed=self.state.exposure == "exposed",
        )

    async def _send_report(self, tan: str) -> None:
        if self.sync_settings is None:
            raise WearableError("backend.url: not set, so a report has nowhere to go")
        self.store.flush(self.aggregator)  # what was heard up to the press belongs to an EBID report
        from agent.sync.client import open_session  # aiohttp and the sync: only when a report is sent
        from agent.sync.service import SyncService
        from agent.wearable.report import send_report

        async with open_session(self.sync_settings) as session:
            service = SyncService(session, self.sync_settings, self.clock, self.store)
            await send_report(service, self.scheme, tan, self.clock.now(), self.calibration.rssi_correction)

    def _report_event(self, event: str) -> None:
        """The wearable's report events go to the notify hook too (a buzzer, a paired phone)."""
        self._run_hook(event)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.config.agent.flush_seconds)
            self.store.flush(self.aggregator)

    async def _key_roller(self) -> None:
        while True:
            self.keys.ensure(self.clock.now())
            self._refresh_scheme()
            await self.clock.sleep(KEY_CHECK_SECONDS)

    def _refresh_scheme(self) -> None:
        """Hand the advertiser new key material only when it changed (new day key, new EBID batch)."""
        scheme = self.keys.scheme()
        if scheme != self._scheme_now and self.edge is not None:
            self._scheme_now = scheme
            self.edge.set_scheme(scheme)

    async def _retention(self) -> None:
        while True:
            removed = 0
            for deleted in self.store.retention_steps(self.clock.now(), self.config.agent.retention_days):
                removed += deleted
                await asyncio.sleep(0)  # one transaction at a time: the scanner's callbacks run in between
            log.info("retention: %d old sighting windows deleted", removed)
            await self.clock.sleep(RETENTION_SECONDS)

    async def _status_loop(self) -> None:
        last_ping = 0.0
        fast_until = time.monotonic() + STARTUP_WINDOW_SECONDS
        while True:
            try:
                self._publish_status()
            except OSError as exc:  # the status file is for operators; the watchdog ping must go on without it
                log.warning("cannot write the status file (%s)", exc.strerror or exc)
            health = self.edge.health() if self.edge else None
            scanning = bool(health and any(sc.scanning for sc in health.scanners))
            advertising = bool(health and health.advertiser and health.advertiser.advertising)
            waiting = not self._trusted.is_set()
            if not self.state.ready and (waiting or (advertising and scanning)):
                self.state.ready = True  # systemd must not time the start out while NTP is still away
                self.notifier.ready(WAITING_FOR_TIME if waiting else "advertising and scanning")
            interval = self.notifier.watchdog_interval
            if interval is not None and self._healthy() and time.monotonic() - last_ping >= interval:
                self.notifier.watchdog()
                last_ping = time.monotonic()
            period = min(STATUS_SECONDS, interval or STATUS_SECONDS)
            starting = not self.state.ready and time.monotonic() < fast_until
            await asyncio.sleep(STARTUP_STATUS_SECONDS if starting else period)

    def _healthy(self) -> bool:
        """Loop alive (we are running) and some scanner heard something within its watchdog window, or
        the radio is off by design because the clock is not trusted yet."""
        if not self._trusted.is_set():
            return True
        if self.edge is None:
            return False
        now = self.clock.now()
        window = self.config.ble.watchdog_seconds * 2
        return any(
            (h.last_heard_at is not None and now - h.last_heard_at < window)
            or (h.scanning and now - self.state.started_at < window)
            for h in self.edge.health().scanners
        )

    def _publish_status(self) -> None:
        now = self.clock.now()
        _, distinct = self.store.sighting_counts(now - 900)
        health = self.edge.health() if self.edge else None
        total = sum(sc.sightings for sc in health.scanners) if health else 0
        last_t, last_total = self._rate_mark
        per_minute = (total - last_total) / (now - last_t) * 60 if now > last_t else 0.0
        self._rate_mark = (now, total)
        adv = health.advertiser if health else None
        status = AgentStatus(
            pid=os.getpid(),
            started_at=self.state.started_at,
            updated_at=now,
            scheme=self.scheme.value,
            advertising=bool(adv and adv.advertising),
            seconds_since_rotation=(now - adv.last_rotation_at) if adv and adv.last_rotation_at else None,
            rotation_failures=adv.failures if adv else 0,
            sightings_per_minute=round(per_minute, 1),
            distinct_ids_15min=distinct,
            db_size_bytes=self.store.size_bytes(),
            last_sync_at=self.state.last_sync_at,
            last_sync_ok=self.state.last_sync_ok,
            exposure=self.state.exposure,
            adapters=_adapter_statuses(health),
            tasks=tuple(TaskStatus(t.name, t.running, t.restarts, t.last_error) for t in self.supervisor.health()),
            notes=self._notes,
            advertising_problem=adv.problem if adv else None,
            make_before_break=adv.make_before_break if adv else None,
            store_problem=self.store.write_error,
            unwritten_windows=self.store.unwritten_windows,
            unwritten_dropped=self.store.unwritten_dropped,
            flood_dropped=self.aggregator.flood_dropped,
            asyncio_tasks=len(asyncio.all_tasks()),
            time=self.time_watch.state,
            report_pending=self.store.credential(PENDING_REPORT) is not None,
            needs_registration=self.state.needs_registration,
            registering_again=self.state.registering_again,
        )
        write_status(self.state_dir, status)
        brief = brief_status(status, now, pid_alive=True)
        changed = self._brief is None or (self._brief.state, self._brief.why) != (brief.state, brief.why)
        self._brief = brief
        if changed:  # a display or LED script learns the first state and every change, not each snapshot
            self._run_hook("state")


def _adapter_statuses(health: BleHealth | None) -> tuple[AdapterStatus, ...]:
    """The edge's per-adapter health, as the status snapshot's adapter lines."""
    if health is None:
        return ()
    return tuple(
        AdapterStatus(
            a.name,
            a.present,
            a.advertising,
            a.scanning,
            a.last_heard_at,
            a.devices_removed,
            a.devices_left,
            a.devices_cached_max,
        )
        for a in health.adapter_statuses()
    )

"""Weeks unattended, in minutes: one real ``proxitrace run`` on the simulated BlueZ with peers that come and go.

The daemon, the simulated bluetoothd and ``proxitrace backend serve`` are the shipped programs, on one
accelerated clock. Peers are simulated phones (beacons whose ID changes every simulated hour); most arrive in
the morning and leave in the afternoon, a few are always there (a housemate's phone), fewer come at weekends.
The agent advertises on one adapter and scans on another (a two-dongle kit), so a rotation never pauses its
scan and scan continuity measures the scanner alone. Every simulated hour the driver samples what would creep
over weeks — RSS, open fds, the event loop's task count (from the status file), DB + WAL size, supervisor
restarts — and which beacon minutes reached the store; the result says how each moved, day by day.

Speed is a trade: the simulator's air ticks run on real time (20 a second), so at 600x a simulated minute
gets two ticks and a host too busy to run one for 0.1 s loses a minute that no agent could have heard;
at 120x a minute gets ten. Continuity is therefore judged at a speed the host can keep.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.clock import DAY
from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.store import DB_FILE
from agent.testbed.processes import wait_for_url

HOUR = 3600
MINUTE = 60
ID_LIFETIME_S = HOUR  # a beacon's ID changes every simulated hour of presence
ALWAYS_THERE = 2  # peers present day and night


@dataclass(frozen=True)
class SoakSettings:
    days: float = 14.0
    speed: float = 600.0
    peers: int = 50
    retention_days: int = 3
    seed: int = 19
    tick_seconds: float = 0.05  # real seconds between air ticks: at 600x, two per simulated minute
    start_hour: int = 0  # simulated time of day (UTC) the run starts at
    sample_every_s: float = HOUR  # simulated seconds between samples


@dataclass(frozen=True)
class Sample:
    t: float  # simulated seconds since the start
    rss_bytes: int
    fds: int
    asyncio_tasks: int
    db_bytes: int
    restarts: int
    scanner_ok: bool
    last_sync_at: float | None
    last_sync_ok: bool | None


@dataclass
class SoakResult:
    settings: SoakSettings
    wall_seconds: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    present_minutes: int = 0  # minutes in which at least one beacon was in range for the whole minute
    heard_minutes: int = 0  # ...of those, minutes with a stored sighting of a beacon
    peer_minutes: int = 0  # (beacon, minute) pairs in range for the whole minute
    peer_minutes_heard: int = 0
    sightings_per_peer_minute: list[tuple[float, float]] = field(default_factory=list)  # (t, mean count)
    syncs_ok: int = 0
    exit_code: int | None = None
    log_tail: str = ""
    sim_ticks: int = 0  # air ticks the simulator ran...
    sim_congested_ticks: int = 0  # ...and those whose reports it dropped because the bus was backed up

    def day_values(self, attr: str, day: int) -> list[float]:
        return [getattr(s, attr) for s in self.samples if day * DAY <= s.t < (day + 1) * DAY]

    def growth(self, attr: str, first_day: int, last_day: int) -> float:
        """Relative change of the day's median from ``first_day`` to ``last_day``."""
        a, b = _median(self.day_values(attr, first_day)), _median(self.day_values(attr, last_day))
        return (b - a) / a if a else 0.0

    @property
    def continuity(self) -> float:
        return self.heard_minutes / self.present_minutes if self.present_minutes else 0.0

    @property
    def peer_continuity(self) -> float:
        return self.peer_minutes_heard / self.peer_minutes if self.peer_minutes else 0.0

    @property
    def restarts(self) -> int:
        return self.samples[-1].restarts if self.samples else 0

    def figures(self) -> dict[str, object]:
        last = max(0, math.ceil(self.settings.days) - 1)
        warm = 1 if last >= 2 else 0
        bitten = self.settings.retention_days + 1
        return {
            "days": self.settings.days,
            "speed": self.settings.speed,
            "wall_seconds": round(self.wall_seconds),
            "samples": len(self.samples),
            "rss_mb_first_day_median": round(_median(self.day_values("rss_bytes", warm)) / 1e6, 1),
            "rss_mb_last_day_median": round(_median(self.day_values("rss_bytes", last)) / 1e6, 1),
            "rss_growth": round(self.growth("rss_bytes", warm, last), 4),
            "fds_first_last_max": (self.day_max("fds", warm), self.day_max("fds", last)),
            "tasks_first_last_max": (self.day_max("asyncio_tasks", warm), self.day_max("asyncio_tasks", last)),
            "db_mb_daily_max": [round(self.day_max("db_bytes", d) / 1e6, 2) for d in range(last + 1)],
            "db_growth_after_retention": round(self.growth_of_max("db_bytes", bitten, last), 4)
            if last > bitten
            else None,
            "db_peak_growth_after_retention": round(self.peak_growth("db_bytes", bitten, last), 4)
            if last > bitten
            else None,
            "supervisor_restarts": self.restarts,
            "continuity": round(self.continuity, 5),
            "present_minutes": self.present_minutes,
            "peer_continuity": round(self.peer_continuity, 5),
            "sightings_per_peer_minute_median": round(_median([v for _, v in self.sightings_per_peer_minute]), 2),
            "syncs_ok": self.syncs_ok,
            "sim_ticks": self.sim_ticks,
            "sim_congested_ticks": self.sim_congested_ticks,
            "exit_code": self.exit_code,
        }

    def day_max(self, attr: str, day: int) -> float:
        return max(self.day_values(attr, day), default=0)

    def growth_of_max(self, attr: str, first_day: int, last_day: int) -> float:
        a, b = self.day_max(attr, first_day), self.day_max(attr, last_day)
        return (b - a) / a if a else 0.0

    def peak_growth(self, attr: str, first_day: int, last_day: int) -> float:
        """How far the largest daily maximum after ``first_day`` (up to ``last_day``) rose above that day's.
        Unlike ``growth_of_max`` a last day with fewer peers (a weekend) cannot hide growth in between, nor
        count as a store that failed to stay flat."""
        a = self.day_max(attr, first_day)
        b = max((self.day_max(attr, d) for d in range(first_day + 1, last_day + 1)), default=a)
        return (b - a) / a if a else 0.0


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2])


class Schedule:
    """Who is in range when: the same deterministic plan for any speed."""

    def __init__(self, peers: int, seed: int) -> None:
        self.peers = peers
        self.seed = seed

    def present(self, peer: int, t: float) -> bool:
        if peer < ALWAYS_THERE:
            return True
        day = int(t // DAY)
        rng = random.Random(self.seed * 1_000_003 + peer * 1009 + day)
        weekend = day % 7 in (5, 6)
        if weekend and peer % 4 != 0:
            return False
        arrive = 7 * HOUR + rng.uniform(0, 3 * HOUR)
        leave = arrive + rng.uniform(4 * HOUR, 9 * HOUR)
        return arrive <= t - day * DAY < leave


def _proc_stats(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _db_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.glob(DB_FILE + "*") if p.is_file())


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout)


def run_soak(settings: SoakSettings, workdir: Path) -> SoakResult:
    return asyncio.run(_soak(settings, workdir))


async def _soak(s: SoakSettings, workdir: Path) -> SoakResult:
    workdir.mkdir(parents=True, exist_ok=True)
    result = SoakResult(s)
    t0 = float(int(time.time()) // DAY * DAY + s.start_hour * HOUR)  # today, simulated
    origin = time.time() + 4.0  # the shared clock starts once backend, bus and simulator are up
    spec = f"accelerated:{t0!r}:{s.speed!r}:{origin!r}"
    backend_toml = workdir / "backend.toml"
    backend_toml.write_text(f'[server]\ndata_dir = "{workdir / "backend"}"\nclock = "{spec}"\n')
    keygen = _cli("backend", "keygen", "--config", str(backend_toml))
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    if keygen.returncode != 0 or public is None:
        raise RuntimeError(f"backend keygen failed: {keygen.stderr.strip()}")
    backend_log = workdir / "backend.log"
    backend = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(backend_toml), "--port", "0"],
        stdout=backend_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = wait_for_url(backend_log, backend, scheme="http")
        sim_config = {
            "seed": s.seed,
            "tick_seconds": s.tick_seconds,
            "device_timeout_seconds": 30,
            "adapters": [{"name": "hci0", "x": 0.0}, {"name": "hci1", "x": 0.5}],
        }
        with SimBed(sim_config, workdir / "bed", clock_spec=spec, air_log=False, log_level="WARNING") as bed:
            await _drive(s, workdir, bed, spec, t0, origin, url, public[1], result)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(15)
    return result


async def _drive(
    s: SoakSettings,
    workdir: Path,
    bed: SimBed,
    spec: str,
    t0: float,
    origin: float,
    url: str,
    public_key: str,
    result: SoakResult,
) -> None:
    state = workdir / "state"
    log_path = workdir / "agent.log"
    daemon = _start_daemon(s, workdir, state, log_path, bed, spec, url, public_key)
    schedule = Schedule(s.peers, s.seed)
    ctl = await SimControl.connect(bed.bus_address)
    beacons: dict[int, tuple[str, bytes, float]] = {}  # peer -> (beacon, ID, on air since)
    stays: dict[bytes, list[tuple[float, float]]] = {}  # ID -> [(from, until)] in simulated seconds from t0
    rng = random.Random(s.seed)
    began = time.monotonic()
    end = s.days * DAY
    next_sample = s.sample_every_s
    heard: dict[bytes, dict[int, int]] = {}  # ID -> {window: sightings}
    seen_rows_since = int(t0)
    sync_marks: set[float] = set()
    ready_at: float | None = None  # scoring starts when the daemon first scans: start-up is not a gap

    def now() -> float:
        return (time.time() - origin) * s.speed

    try:
        while (t := now()) < end:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}): {log_path.read_text()[-2000:]}")
            await _place_beacons(ctl, s, schedule, rng, beacons, stays, t, now)
            if t >= next_sample:
                next_sample += s.sample_every_s
                seen_rows_since = _collect(state, seen_rows_since, heard)
                sample = _sample(daemon.pid, state, t)
                if sample is not None:
                    result.samples.append(sample)
                    if sample.last_sync_ok and sample.last_sync_at is not None:
                        sync_marks.add(sample.last_sync_at)
            if ready_at is None and _scanning(state):
                ready_at = now()
            await asyncio.sleep(min(0.2, 30 / s.speed))
        stats = await ctl.stats()
        result.sim_ticks, result.sim_congested_ticks = int(stats["ticks"]), int(stats["congested_ticks"])
        for _ident, eid, since in beacons.values():
            stays.setdefault(eid, []).append((since, now()))
    finally:
        ctl.close()
        if daemon.poll() is None:
            result.exit_code = _stop_daemon(daemon)
        result.wall_seconds = time.monotonic() - began
        result.log_tail = log_path.read_text(errors="replace")[-3000:]
    _collect(state, seen_rows_since, heard)  # after SIGTERM's final flush: the last minutes are stored now
    _score(result, stays, heard, t0, ready_at if ready_at is not None else end)
    result.syncs_ok = len(sync_marks)


def _start_daemon(
    s: SoakSettings,
    workdir: Path,
    state: Path,
    log_path: Path,
    bed: SimBed,
    spec: str,
    url: str,
    public_key: str,
) -> subprocess.Popen[bytes]:
    """``proxitrace run`` (GAEN) advertising on hci0 and scanning on hci1, on the soak's clock."""
    conf = workdir / "agent.toml"
    conf.write_text(
        f'[agent]\nscheme = "gaen"\nretention_days = {s.retention_days}\nflush_seconds = 2\n'
        '[ble]\nadvertise_adapter = "hci0"\nscan_adapters = ["hci1"]\n'
        f'[backend]\nurl = "{url}"\npublic_key = "{public_key}"\nsync_interval_seconds = 86400\n'
        "sync_jitter_seconds = 600\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run", "--clock", spec],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **bed.env},
    )


async def _place_beacons(
    ctl: SimControl,
    s: SoakSettings,
    schedule: Schedule,
    rng: random.Random,
    beacons: dict[int, tuple[str, bytes, float]],
    stays: dict[bytes, list[tuple[float, float]]],
    t: float,
    now: Callable[[], float],
) -> None:
    """Each peer's beacon on the air while the schedule has them present, with a fresh ID once it is
    ``ID_LIFETIME_S`` old; every beacon taken off records its stay."""
    for peer in range(s.peers):
        want = schedule.present(peer, max(0.0, t) + s.start_hour * HOUR)
        have = beacons.get(peer)
        stale = have is not None and t - have[2] >= ID_LIFETIME_S
        if have is not None and (not want or stale):
            await ctl.remove_beacon(have[0])
            stays.setdefault(have[1], []).append((have[2], now()))
            del beacons[peer]
            have = None
        if want and have is None:
            data = rng.randbytes(20)
            ident = await ctl.add_beacon({uuid128(0xFD6F): data}, x=1.0 + peer % 5, y=peer // 5 * 0.3, interval_ms=250)
            beacons[peer] = (ident, data[:16], now())


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> int:
    """SIGTERM (its final flush), then SIGKILL if it has not exited in 30 s; its exit code."""
    daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        return daemon.wait(5)


def _collect(state: Path, since: int, heard: dict[bytes, dict[int, int]]) -> int:
    """Every row stored since ``since`` (before retention can take it): which ID was heard in which minute."""
    db = state / DB_FILE
    if not db.exists():
        return since
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT id, window_start, count FROM sightings WHERE window_start >= ?", (since,)
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return since
    finally:
        conn.close()
    newest = since
    for ephid, window, count in rows:
        heard.setdefault(bytes(ephid), {})[window] = count
        newest = max(newest, window)
    return max(since, newest - 2 * MINUTE)  # the last windows may still grow: read them again next time


def _sample(pid: int, state: Path, t: float) -> Sample | None:
    try:
        raw = json.loads((state / "status.json").read_text())
        rss, fds = _proc_stats(pid)
    except (OSError, ValueError):
        return None
    return Sample(
        t=t,
        rss_bytes=rss,
        fds=fds,
        asyncio_tasks=int(raw.get("asyncio_tasks", 0)),
        db_bytes=_db_bytes(state),
        restarts=sum(int(task["restarts"]) for task in raw.get("tasks", ())),
        scanner_ok=any(a["scanning"] for a in raw.get("adapters", ())),
        last_sync_at=raw.get("last_sync_at"),
        last_sync_ok=raw.get("last_sync_ok"),
    )


def _scanning(state: Path) -> bool:
    try:
        raw = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return any(a["scanning"] for a in raw.get("adapters", ()))


def _score(
    result: SoakResult,
    stays: dict[bytes, list[tuple[float, float]]],
    heard: dict[bytes, dict[int, int]],
    t0: float,
    ready_at: float,
) -> None:
    """Minutes wholly inside a beacon's stay are minutes it was in range; were they stored, and how often?
    Scoring starts at the first beacon minute stored: bleak's first report after the first scan start is
    start-up, not a gap."""
    beacon_minutes = [w for eid in stays for w in heard.get(eid, {})]
    if beacon_minutes:
        ready_at = max(ready_at, min(beacon_minutes) - t0)
    present: dict[int, bool] = {}
    per_minute: dict[int, list[int]] = {}
    for eid, spans in stays.items():
        minutes = heard.get(eid, {})
        for start, stop in spans:
            first = int(t0 + max(start, ready_at)) // MINUTE * MINUTE + MINUTE
            for window in range(first, int(t0 + stop) - MINUTE, MINUTE):
                result.peer_minutes += 1
                count = minutes.get(window)
                result.peer_minutes_heard += count is not None
                present[window] = present.get(window, False) or count is not None
                if count is not None:
                    per_minute.setdefault(window, []).append(count)
    result.present_minutes = len(present)
    result.heard_minutes = sum(present.values())
    result.sightings_per_peer_minute = sorted((w - t0, sum(c) / len(c)) for w, c in per_minute.items())

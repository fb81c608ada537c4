"""``proxitrace testbed sim``: a workplace scenario played by real agents on the simulated BlueZ.

Everything that runs is the shipped code, unmodified: one ``proxitrace run`` process per person (separate
processes, as on separate devices: each has its own D-Bus connection, bleak state, store and keys), the
simulated BlueZ with one adapter per person whose position follows the scenario, and ``proxitrace backend
serve``. All of them share one accelerated clock. When the scenario's time is up the agents are stopped,
the positive people get a TAN from the health authority and report, the backend releases the keys, and
everyone else syncs (or, with EBIDs, polls their status). The result is compared with the ground truth.
The hours between the report and the lists' release, when nothing runs but the backend's clock, are
skipped by restarting the backend on a clock that starts at the release (``_at_release``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.clock import DAY
from agent.sim.air_log import AirSummary, instances, summarize
from agent.sim.channel import FITTED
from agent.sim.harness import SimBed
from agent.testbed.pki import CaFiles, make_ca
from agent.testbed.processes import (
    Processes,
    cli,
    enrolment_codes,
    in_parallel,
    keygen,
    pause,
    register_all,
    report_positives,
    start_agents,
    wait_for_url,
    wait_until_up,
    write_agent_configs,
    write_backend_config,
)
from agent.testbed.scenario import Scenario
from agent.testbed.trace import ScanBehaviour, Trace, TraceRow, format_trace
from agent.testbed.truth import SAMPLE_SECONDS, close_contacts, efficacy

log = logging.getLogger(__name__)

SIM_TX_POWER = -8  # dBm: the simulated controllers radiate what the agents advertise (calibration default)
LOSS_AT_1M_DB = 51.5  # body-shadowed indoor loss: 55 dB attenuation ≈ 1.5 m, 63 dB ≈ 3.8 m (SwissCovid buckets)
AWAY = 10_000.0  # metres: out of everyone's range
ARRIVE_EARLY = 1800  # seconds of simulated time before the first arrival
# Real seconds of set-up before the shared clock reaches the window's start, per person: an agent takes about
# a CPU-second to come up (two at once on a 2-core machine), a registration about half that. Until then the
# clock runs through simulated time before the window, when nobody is at work.
SETUP_SECONDS = 4.0
SETUP_SECONDS_PER_AGENT = 0.8
SETUP_SECONDS_PER_REGISTRATION = 0.6


@dataclass(frozen=True)
class PersonResult:
    name: str
    true_contact: bool
    notified: bool
    positive: bool


@dataclass(frozen=True)
class SchemeResult:
    scheme: str
    scenario: str
    channel: str
    seed: int
    speed: float
    simulated_from: str
    simulated_until: str
    true_contacts: int
    notified: int
    recall: float
    precision: float
    address_id_violations: int
    adverts_on_air: int
    air_instances: int
    wall_seconds: float
    late_start_seconds: float  # simulated seconds of the window that passed before every agent was up
    people: tuple[PersonResult, ...]


def simulated_window(scenario: Scenario, quick: bool) -> tuple[float, float]:
    """From before the first arrival on the first simulated day to the last positive test."""
    first_day = max(p.day for p in scenario.positives) if quick else 0
    arrive = min(s.at for p in scenario.people for s in p.schedule if s.place is not None)
    start = scenario.start + first_day * DAY + arrive - ARRIVE_EARLY
    end = max(scenario.start + p.day * DAY + p.at for p in scenario.positives)
    return start, end


def radio_config(scenario: Scenario, channel: str | None = None) -> dict[str, float]:
    """The simulator's radio: the fitted channel (the default) or the ideal one, as ``channel`` or the
    scenario's ``radio.channel`` says. Both use the test-bed's calibrated level at 1 m."""
    if (channel or scenario.radio.channel) == "fitted":
        return {k: float(v) for k, v in asdict(FITTED).items()}
    return {
        "path_loss_exponent": 2.0,
        "loss_at_1m_db": LOSS_AT_1M_DB,
        "noise_sigma_db": scenario.radio.noise_db,
        "cutoff_rssi": -100.0,
    }


def sim_config(
    scenario: Scenario, seed: int, tick_seconds: float, window: tuple[float, float], channel: str | None = None
) -> dict[str, object]:
    """One adapter per person, moving along the scenario's schedule (piecewise constant: 1-s moves)."""
    adapters = []
    for i, person in enumerate(scenario.people):
        away = (AWAY * (i + 1), AWAY)
        points: list[list[float]] = []
        t = window[0]
        while t <= window[1] + 60:
            pos = scenario.position(person, t, seed) or away
            if not points or (points[-1][1], points[-1][2]) != pos:
                if points:
                    points.append([t - 1, points[-1][1], points[-1][2]])
                points.append([t, pos[0], pos[1]])
            t += 60
        adapters.append({"name": f"hci{i}", "track": points, "tx_power": SIM_TX_POWER})
    return {
        "adapters": adapters,
        "tick_seconds": tick_seconds,
        "seed": seed,
        "device_timeout_seconds": 30.0,
        "radio": radio_config(scenario, channel),
    }


@dataclass(frozen=True)
class _Clock:
    """The run's shared accelerated clock: it reaches the window's start ``t0`` at wall time ``origin``."""

    t0: float
    t1: float
    speed: float
    origin: float

    @property
    def spec(self) -> str:
        return f"accelerated:{self.t0!r}:{self.speed!r}:{self.origin!r}"


@dataclass(frozen=True)
class _Backend:
    toml: Path
    public: str
    url: str
    pki: CaFiles
    server: subprocess.Popen[bytes]


@dataclass(frozen=True)
class _Played:
    notified: set[str]
    late: float
    summary: AirSummary
    air_instances: int
    receive_log: Path | None


def run_scheme(
    scenario: Scenario,
    scheme: str,
    workdir: Path,
    *,
    speed: float = 600.0,
    seed: int = 1,
    quick: bool = False,
    progress: Callable[[float], None] | None = None,
    trace: Path | None = None,
    channel: str | None = None,
    side_by_side: int = 1,
    stop: threading.Event | None = None,
) -> SchemeResult:
    """Play ``scenario`` for one scheme: backend and agents as real processes on the simulated air, on one
    accelerated clock; the positives report, everyone syncs, and who was notified is scored against the truth.

    With ``trace``, also write what each receiver was handed (and the ground-truth distances) as a trace
    file that ``testbed replay`` scores. ``side_by_side``: how many runs start at once (their agents share
    the CPU while starting, so each gets that much more set-up time); ``stop`` ends the run early
    (TestbedCancelled) with everything cleaned up."""
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    t0, t1 = simulated_window(scenario, quick)
    tick = max(0.05, 60.0 / speed)  # one air tick per simulated minute, at most 20 a second
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXITRACE_")}
    procs = Processes()
    # the shared clock reaches the window's start once everything is up
    clock = _Clock(t0, t1, speed, time.time() + _setup_lead(scenario, scheme, side_by_side))
    scan_interval = max(60, round(tick * speed))
    try:
        backend = _start_backend(procs, workdir, clock.spec, env)
        with SimBed(
            sim_config(scenario, seed, tick, (t0, t1), channel),
            workdir / "bed",
            clock_spec=clock.spec,
            receive_log=trace is not None,
        ) as bed:
            played = _play_agents(
                scenario, scheme, workdir, clock, backend, scan_interval, procs, bed, env, progress, stop
            )
        procs.stop(backend.server)
    finally:
        procs.close()
    if trace is not None and played.receive_log is not None:
        _write_trace(trace, played.receive_log, scenario, seed, (t0, t1), scan_interval)
    return _score(scenario, scheme, channel, seed, quick, clock, played, began)


def _setup_lead(scenario: Scenario, scheme: str, side_by_side: int) -> float:
    """Real seconds the run gives its processes to come up before the clock reaches the window's start."""
    return SETUP_SECONDS + side_by_side * len(scenario.people) * (
        SETUP_SECONDS_PER_AGENT + (SETUP_SECONDS_PER_REGISTRATION if scheme == "ebid" else 0.0)
    )


def _start_backend(procs: Processes, workdir: Path, spec: str, env: dict[str, str]) -> _Backend:
    """This run's CA and certificate, a fresh list-signing key, and ``proxitrace backend serve`` on them."""
    pki = make_ca(workdir / "pki")
    backend_toml = write_backend_config(workdir, spec, pki)
    public = keygen(backend_toml, env)
    server = procs.start(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(backend_toml), "--port", "0"],
        workdir / "backend.log",
        env,
    )
    url = wait_for_url(workdir / "backend.log", server)
    return _Backend(backend_toml, public, url, pki, server)


def _play_agents(
    scenario: Scenario,
    scheme: str,
    workdir: Path,
    clock: _Clock,
    backend: _Backend,
    scan_interval: int,
    procs: Processes,
    bed: SimBed,
    env: dict[str, str],
    progress: Callable[[float], None] | None,
    stop: threading.Event | None,
) -> _Played:
    """On the simulated air: configure (and, for EBIDs, register) and start the agents, play the window,
    stop them, let the positives report and collect who was notified."""
    agent_env = {**env, **bed.env}
    states = write_agent_configs(
        scenario, scheme, workdir, clock.spec, backend.url, backend.public, scan_interval, backend.pki
    )
    if scheme == "ebid":
        register_all(states, enrolment_codes(backend.toml, len(states), env), agent_env)
    agents = start_agents(procs, states, workdir, agent_env)
    ready_at = wait_until_up(states, agents, clock.origin + 60, stop)
    late = max(0.0, (ready_at - clock.origin) * clock.speed)
    if late:
        log.warning("agents were all up only %.0f simulated minutes into the window", late / 60)
    _play(clock.t0, clock.t1, clock.speed, clock.origin, progress, stop)
    for name, proc in agents.items():
        code = procs.stop(proc)
        if code != 0:
            log.warning("agent %s exited %s; see its log", name, code)
    report_positives(scenario, states, backend.toml, env, agent_env)
    positives = {p.person for p in scenario.positives}
    if scheme != "ebid":
        states, server = _at_release(scenario, scheme, workdir, clock, backend, scan_interval, procs, env)
        notified = _collect(scheme, states, positives, agent_env)
        procs.stop(server)
    else:
        notified = _collect(scheme, states, positives, agent_env)
    summary = summarize(bed.air_records())
    air = instances(bed.air_records())
    return _Played(notified, late, summary, len(air), bed.receive_log_path)


def _write_trace(
    trace: Path, received: Path, scenario: Scenario, seed: int, window: tuple[float, float], scan_interval: int
) -> None:
    scan = ScanBehaviour(duty_cycled=scan_interval > 60, period_seconds=scan_interval)
    recorded = run_trace(received, scenario, seed, window, scan)
    with trace.open("w") as f:
        f.writelines(format_trace(recorded))


def _score(
    scenario: Scenario,
    scheme: str,
    channel: str | None,
    seed: int,
    quick: bool,
    clock: _Clock,
    played: _Played,
    began: float,
) -> SchemeResult:
    """Who was notified, against who was truly a close contact in the window."""
    t0, t1 = clock.t0, clock.t1
    notified = played.notified
    positives = {p.person for p in scenario.positives}
    truth = {c.person for c in close_contacts(scenario, seed, until=t1, since=t0 if quick else None)}
    eff = efficacy(truth, notified)
    return SchemeResult(
        scheme=scheme,
        scenario=scenario.name,
        channel=channel or scenario.radio.channel,
        seed=seed,
        speed=clock.speed,
        simulated_from=datetime.fromtimestamp(t0, UTC).isoformat(),
        simulated_until=datetime.fromtimestamp(t1, UTC).isoformat(),
        true_contacts=eff.true_contacts,
        notified=eff.notified,
        recall=round(eff.recall, 3),
        precision=round(eff.precision, 3),
        address_id_violations=len(played.summary.violations),
        adverts_on_air=played.summary.adverts_on_air,
        air_instances=played.air_instances,
        wall_seconds=round(time.monotonic() - began, 1),
        late_start_seconds=round(played.late),
        people=tuple(
            PersonResult(p.name, p.name in truth, p.name in notified, p.name in positives) for p in scenario.people
        ),
    )


def run_trace(received: Path, scenario: Scenario, seed: int, window: tuple[float, float], scan: ScanBehaviour) -> Trace:
    """The simulator's receive log under the people's names, plus a ground-truth row per minute for each
    pair of people present (the scenario's own positions, sampled as its ground truth samples them)."""
    names = {f"hci{i}": p.name for i, p in enumerate(scenario.people)}
    rows = []
    with received.open() as f:
        for line in f:
            t, rx, tx, rssi, tx_power, d = line.rstrip("\n").split(",")
            if rx in names and tx in names:
                rows.append(TraceRow(float(t), names[rx], names[tx], int(rssi), int(tx_power), distance_m=float(d)))
    t = window[0]
    while t < window[1]:
        here = {p.name: scenario.position(p, t, seed) for p in scenario.people}
        present = sorted(n for n, pos in here.items() if pos is not None)
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                rows.append(TraceRow(t, a, b, None, distance_m=math.dist(here[a], here[b])))  # type: ignore[arg-type]
        t += SAMPLE_SECONDS
    rows.sort(key=lambda r: r.time)
    return Trace(scan, tuple(rows))


def _sim_now(t0: float, speed: float, origin: float) -> float:
    return t0 + (time.time() - origin) * speed


def _play(
    t0: float,
    t1: float,
    speed: float,
    origin: float,
    progress: Callable[[float], None] | None,
    stop: threading.Event | None,
) -> None:
    while (now := _sim_now(t0, speed, origin)) < t1:
        if progress is not None:
            progress(min(1.0, max(0.0, (now - t0) / (t1 - t0))))
        pause(min(0.5, (t1 - now) / speed + 0.01), stop)
    if progress is not None:
        progress(1.0)


def _at_release(
    scenario: Scenario,
    scheme: str,
    workdir: Path,
    clock: _Clock,
    backend: _Backend,
    scan_interval: int,
    procs: Processes,
    env: dict[str, str],
) -> tuple[dict[str, tuple[Path, Path]], subprocess.Popen[bytes]]:
    """A list's keys go out once their day is over and its release bucket closed: hours of simulated
    time (49 real seconds at speed 600) in which nothing runs but the backend's clock, the agents being
    stopped. So the backend is restarted (same store, keys and certificate) on a clock that starts at the
    release, and the agents' configs point the syncs at it and its clock: the syncs see what they would
    have seen after the wait. Returns the rewritten configs and the new backend."""
    release = (math.floor(clock.t1 / DAY) + 1) * DAY + 2 * 3600 + 600  # the day is over and its bucket closed
    later = _Clock(release, release, clock.speed, time.time())
    procs.stop(backend.server)
    toml = write_backend_config(workdir, later.spec, backend.pki)
    log_path = workdir / "backend.log"
    before = len(log_path.read_text(errors="replace"))
    server = procs.start(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(toml), "--port", "0"], log_path, env, True
    )
    url = wait_for_url(log_path, server, after=before)
    configs = write_agent_configs(
        scenario, scheme, workdir, later.spec, url, backend.public, scan_interval, backend.pki
    )
    return configs, server


def _collect(scheme: str, states: dict[str, tuple[Path, Path]], positives: set[str], env: dict[str, str]) -> set[str]:
    """Who got notified: from a sync once the keys are released (lists), or from the status (EBID);
    every person's at once."""
    command = "status-check" if scheme == "ebid" else "sync"

    def ask(name: str, paths: tuple[Path, Path]) -> bool:
        conf, state = paths
        out = cli("--config", str(conf), "--state-dir", str(state), command, "--json", env=env)
        if out.returncode != 0:
            log.warning("%s for %s failed: %s", command, name, out.stderr.strip()[-300:])
            return False
        result = json.loads(out.stdout)
        return bool(result.get("notify") or result.get("at_risk"))

    others = {name: paths for name, paths in states.items() if name not in positives}
    return {name for name, told in in_parallel(others, ask).items() if told}

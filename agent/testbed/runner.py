"""``proxitrace testbed sim``: a workplace scenario played by real agents on the simulated BlueZ.

Everything that runs is the shipped code, unmodified: one ``proxitrace run`` process per person (separate
processes, as on separate devices: each has its own D-Bus connection, bleak state, store and keys), the
simulated BlueZ with one adapter per person whose position follows the scenario, and ``proxitrace backend
serve``. All of them share one accelerated clock. When the scenario's time is up the agents are stopped,
the positive people get a TAN from the health authority and report, the backend releases the keys, and
everyone else syncs (or, with EBIDs, polls their status). The result is compared with the ground truth.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.clock import DAY
from agent.sim.air_log import instances, summarize
from agent.sim.harness import SimBed
from agent.status import read_status
from agent.testbed.scenario import Scenario
from agent.testbed.truth import close_contacts, efficacy

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


def sim_config(scenario: Scenario, seed: int, tick_seconds: float, window: tuple[float, float]) -> dict[str, object]:
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
        "radio": {
            "path_loss_exponent": 2.0,
            "loss_at_1m_db": LOSS_AT_1M_DB,
            "noise_sigma_db": scenario.radio.noise_db,
            "cutoff_rssi": -100.0,
        },
    }


class _Processes:
    """Every process the run starts, each in its own process group, killed on any exit path."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(5)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def run_scheme(
    scenario: Scenario,
    scheme: str,
    workdir: Path,
    *,
    speed: float = 600.0,
    seed: int = 1,
    quick: bool = False,
    progress: Callable[[float], None] | None = None,
) -> SchemeResult:
    """Play ``scenario`` for one scheme: backend and agents as real processes on the simulated air, on one
    accelerated clock; the positives report, everyone syncs, and who was notified is scored against the truth."""
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    t0, t1 = simulated_window(scenario, quick)
    tick = max(0.05, 60.0 / speed)  # one air tick per simulated minute, at most 20 a second
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXITRACE_")}
    procs = _Processes()
    lead = SETUP_SECONDS + len(scenario.people) * (
        SETUP_SECONDS_PER_AGENT + (SETUP_SECONDS_PER_REGISTRATION if scheme == "ebid" else 0.0)
    )
    origin = time.time() + lead  # the shared clock reaches the window's start once everything is up
    spec = f"accelerated:{t0!r}:{speed!r}:{origin!r}"
    positives = {p.person for p in scenario.positives}
    try:
        backend_toml = _write_backend_config(workdir, spec)
        public = _keygen(backend_toml, env)
        server = procs.start(
            [sys.executable, "-m", "agent", "backend", "serve", "--config", str(backend_toml), "--port", "0"],
            workdir / "backend.log",
            env,
        )
        url = _wait_for_url(workdir / "backend.log", server)
        with SimBed(sim_config(scenario, seed, tick, (t0, t1)), workdir / "bed", clock_spec=spec) as bed:
            agent_env = {**env, **bed.env}
            scan_interval = max(60, round(tick * speed))
            states = _write_agent_configs(scenario, scheme, workdir, spec, url, public, scan_interval)
            if scheme == "ebid":
                _register_all(states, _enrolment_codes(backend_toml, len(states), env), agent_env)
            agents = _start_agents(procs, states, workdir, agent_env)
            ready_at = _wait_until_up(states, agents, origin + 60)
            late = max(0.0, (ready_at - origin) * speed)
            if late:
                log.warning("agents were all up only %.0f simulated minutes into the window", late / 60)
            _play(t0, t1, speed, origin, progress)
            for name, proc in agents.items():
                code = procs.stop(proc)
                if code != 0:
                    log.warning("agent %s exited %s; see its log", name, code)
            _report_positives(scenario, states, backend_toml, env, agent_env)
            notified = _collect(scheme, states, positives, (t0, t1), speed, origin, agent_env)
            summary = summarize(bed.air_records())
            air = instances(bed.air_records())
        procs.stop(server)
    finally:
        procs.close()
    truth = {c.person for c in close_contacts(scenario, seed, until=t1, since=t0 if quick else None)}
    eff = efficacy(truth, notified)
    return SchemeResult(
        scheme=scheme,
        scenario=scenario.name,
        seed=seed,
        speed=speed,
        simulated_from=datetime.fromtimestamp(t0, UTC).isoformat(),
        simulated_until=datetime.fromtimestamp(t1, UTC).isoformat(),
        true_contacts=eff.true_contacts,
        notified=eff.notified,
        recall=round(eff.recall, 3),
        precision=round(eff.precision, 3),
        address_id_violations=len(summary.violations),
        adverts_on_air=summary.adverts_on_air,
        air_instances=len(air),
        wall_seconds=round(time.monotonic() - began, 1),
        late_start_seconds=round(late),
        people=tuple(
            PersonResult(p.name, p.name in truth, p.name in notified, p.name in positives) for p in scenario.people
        ),
    )


def _write_backend_config(workdir: Path, spec: str) -> Path:
    """A backend on the shared clock with quick responses and codes that outlive the whole run."""
    backend_toml = workdir / "backend.toml"
    backend_toml.write_text(
        f'[server]\ndata_dir = "{workdir / "backend"}"\nclock = "{spec}"\n'
        "[upload]\nmin_response_seconds = 0.05\ntoken_ttl_seconds = 86400\n"
        "[tan]\nvalid_seconds = 864000\n"
        "[ebid]\npow_difficulty = 8\nchallenge_ttl_seconds = 86400\naccess_token_ttl_seconds = 86400\n"
        "enrolment_valid_seconds = 864000\nstatus_polls_per_day = 100\n"
    )
    return backend_toml


def _keygen(backend_toml: Path, env: dict[str, str]) -> str:
    """The backend's new list-signing public key, which every agent's config pins."""
    keygen = _cli("backend", "keygen", "--config", str(backend_toml), env=env)
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    if keygen.returncode != 0 or not public:
        raise RuntimeError(f"backend keygen failed: {keygen.stderr.strip()}")
    return public[1]


def _enrolment_codes(backend_toml: Path, count: int, env: dict[str, str]) -> list[str]:
    issued = _cli("backend", "enrol", "issue", "--config", str(backend_toml), "--count", str(count), env=env)
    return issued.stdout.split()


def _write_agent_configs(
    scenario: Scenario, scheme: str, workdir: Path, spec: str, url: str, public: str, scan_interval: int
) -> dict[str, tuple[Path, Path]]:
    """Person i's agent uses simulated adapter hci{i}; syncs happen only when the run asks for them."""
    states = {}
    for i, person in enumerate(scenario.people):
        conf = workdir / f"{person.name}.toml"
        conf.write_text(
            f'[agent]\nscheme = "{scheme}"\nclock = "{spec}"\n'
            f'[ble]\nadvertise_adapter = "hci{i}"\nscan_adapters = ["hci{i}"]\nwatchdog_seconds = 120\n'
            f'[backend]\nurl = "{url}"\npublic_key = "{public}"\nsync_interval_seconds = 31536000\n'
            "sync_jitter_seconds = 0\nsubmission_spread_seconds = 300\ndummy_traffic = true\n"
            "dummy_mean_interval_seconds = 7200\n"
            f"[risk.exposure_windows]\nscan_interval_seconds = {scan_interval}\n"
        )
        states[person.name] = (conf, workdir / "agents" / person.name)
    return states


def _start_agents(
    procs: _Processes, states: dict[str, tuple[Path, Path]], workdir: Path, env: dict[str, str]
) -> dict[str, subprocess.Popen[bytes]]:
    return {
        name: procs.start(
            [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run"],
            workdir / f"agent-{name}.log",
            env,
        )
        for name, (conf, state) in states.items()
    }


def _report_positives(
    scenario: Scenario,
    states: dict[str, tuple[Path, Path]],
    backend_toml: Path,
    env: dict[str, str],
    agent_env: dict[str, str],
) -> None:
    """Each positive gets a TAN for their onset day and reports through ``proxitrace report``, as a user does."""
    for p in scenario.positives:
        onset = datetime.fromtimestamp(scenario.start + (p.day - p.onset_days_before) * DAY, UTC).date().isoformat()
        tan = _cli("backend", "tan", "issue", "--config", str(backend_toml), "--onset", onset, env=env).stdout.strip()
        conf, state = states[p.person]
        args = ("--config", str(conf), "--state-dir", str(state), "report", "--tan", tan, "--onset", onset, "--yes")
        sent = _cli(*args, env=agent_env)
        if sent.returncode != 0:
            raise RuntimeError(f"report by {p.person} failed: {sent.stderr.strip()}")


def _register_all(states: dict[str, tuple[Path, Path]], codes: list[str], env: dict[str, str]) -> None:
    """Every person's device registers (proof of work and enrolment code), all at once."""

    def register(item: tuple[tuple[Path, Path], str]) -> subprocess.CompletedProcess[str]:
        (conf, state), code = item
        return _cli("--config", str(conf), "--state-dir", str(state), "register", "--code", code, env=env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(register, zip(states.values(), codes, strict=True)))
    for name, reg in zip(states, results, strict=True):
        if reg.returncode != 0:
            raise RuntimeError(f"register {name}: {reg.stderr.strip()}")


def _wait_until_up(
    states: dict[str, tuple[Path, Path]], agents: dict[str, subprocess.Popen[bytes]], deadline: float
) -> float:
    """When (wall clock) every agent's status first says it advertises and scans."""
    waiting = set(states)
    while waiting and time.time() < deadline:
        for name in list(waiting):
            if agents[name].poll() is not None:
                raise RuntimeError(f"agent {name} exited {agents[name].returncode} while starting; see its log")
            status = read_status(states[name][1])
            if status and status.advertising and any(a.scanning for a in status.adapters):
                waiting.discard(name)
        time.sleep(0.1)
    if waiting:
        raise RuntimeError(f"agents not advertising and scanning after a minute: {', '.join(sorted(waiting))}")
    return time.time()


def _wait_for_url(log_path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if found:
            return found[1]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the backend did not start: {log_path.read_text(errors='replace')[-500:]}")


def _sim_now(t0: float, speed: float, origin: float) -> float:
    return t0 + (time.time() - origin) * speed


def _play(t0: float, t1: float, speed: float, origin: float, progress: Callable[[float], None] | None) -> None:
    while (now := _sim_now(t0, speed, origin)) < t1:
        if progress is not None:
            progress(min(1.0, max(0.0, (now - t0) / (t1 - t0))))
        time.sleep(min(0.5, (t1 - now) / speed + 0.01))
    if progress is not None:
        progress(1.0)


def _collect(
    scheme: str,
    states: dict[str, tuple[Path, Path]],
    positives: set[str],
    window: tuple[float, float],
    speed: float,
    origin: float,
    env: dict[str, str],
) -> set[str]:
    """Who got notified: after the keys are released (lists), or from the status (EBID)."""
    notified = set()
    if scheme != "ebid":
        t0, t1 = window
        release = (math.floor(t1 / DAY) + 1) * DAY + 2 * 3600 + 600  # the day is over and its bucket closed
        while _sim_now(t0, speed, origin) < release:
            time.sleep(0.2)
    for name, (conf, state) in states.items():
        if name in positives:
            continue
        command = "status-check" if scheme == "ebid" else "sync"
        out = _cli("--config", str(conf), "--state-dir", str(state), command, "--json", env=env)
        if out.returncode != 0:
            log.warning("%s for %s failed: %s", command, name, out.stderr.strip()[-300:])
            continue
        result = json.loads(out.stdout)
        if result.get("notify") or result.get("at_risk"):
            notified.add(name)
    return notified


def write_report(results: list[SchemeResult], folder: Path) -> list[Path]:
    """summary.json, summary.csv and, with matplotlib installed, summary.png."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "summary.json", folder / "summary.csv"]
    written[0].write_text(json.dumps([asdict(r) for r in results], indent=1))
    with written[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scheme", "person", "positive", "true_contact", "notified"])
        for r in results:
            for p in r.people:
                w.writerow([r.scheme, p.name, p.positive, p.true_contact, p.notified])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [p.name for p in results[0].people]
    for row, r in enumerate(results):
        for col, p in enumerate(r.people):
            mark = "o" if p.true_contact else "x"
            color = "tab:red" if p.notified else "tab:grey"
            ax.scatter(col, row, marker=mark, color=color, s=80)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(results)), [r.scheme for r in results])
    ax.set_title("o = true close contact, x = not; red = notified")
    fig.tight_layout()
    fig.savefig(folder / "summary.png")
    written.append(folder / "summary.png")
    return written

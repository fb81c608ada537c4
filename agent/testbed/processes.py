"""The processes a ``testbed sim`` run starts and the command-line steps it takes with them: the backend on
this run's PKI, one agent per person with its config, registration, reporting and the wait until every agent is
up. Everything goes through ``python -m agent``, as a user's commands do."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from agent.clock import DAY
from agent.status import read_status
from agent.testbed.pki import CaFiles
from agent.testbed.scenario import Scenario

T = TypeVar("T")


class TestbedCancelled(Exception):
    """The run was told to stop (Ctrl-C while several schemes run side by side)."""


def pause(seconds: float, stop: threading.Event | None) -> None:
    """Sleep, or raise TestbedCancelled as soon as ``stop`` is set: the run's clean-up then runs."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise TestbedCancelled


class Processes:
    """Every process the run starts, each in its own process group, killed on any exit path."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], log_path: Path, env: dict[str, str], append: bool = False
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            stdout=log_path.open("ab" if append else "wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
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


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def write_backend_config(workdir: Path, spec: str, pki: CaFiles) -> Path:
    """A backend on the shared clock, serving HTTPS with this run's certificate, with quick responses and
    codes that outlive the whole run."""
    backend_toml = workdir / "backend.toml"
    backend_toml.write_text(
        f'[server]\ndata_dir = "{workdir / "backend"}"\nclock = "{spec}"\n'
        f'tls_cert_file = "{pki.cert_file}"\ntls_key_file = "{pki.key_file}"\n'
        "[upload]\nmin_response_seconds = 0.05\ntoken_ttl_seconds = 86400\n"
        "[tan]\nvalid_seconds = 864000\n"
        "[ebid]\npow_difficulty = 8\nchallenge_ttl_seconds = 86400\naccess_token_ttl_seconds = 86400\n"
        "enrolment_valid_seconds = 864000\nstatus_polls_per_day = 100\n"
    )
    return backend_toml


def keygen(backend_toml: Path, env: dict[str, str]) -> str:
    """The backend's new list-signing public key, which every agent's config pins."""
    made = cli("backend", "keygen", "--config", str(backend_toml), env=env)
    public = re.search(r'public_key = "([^"]+)"', made.stdout)
    if made.returncode != 0 or not public:
        raise RuntimeError(f"backend keygen failed: {made.stderr.strip()}")
    return public[1]


def enrolment_codes(backend_toml: Path, count: int, env: dict[str, str]) -> list[str]:
    issued = cli("backend", "enrol", "issue", "--config", str(backend_toml), "--count", str(count), env=env)
    return issued.stdout.split()


def write_agent_configs(
    scenario: Scenario,
    scheme: str,
    workdir: Path,
    spec: str,
    url: str,
    public: str,
    scan_interval: int,
    pki: CaFiles,
) -> dict[str, tuple[Path, Path]]:
    """Person i's agent uses simulated adapter hci{i} and trusts only this run's CA; syncs happen only when
    the run asks for them. EBID reports go as separate submissions spread over 300 simulated seconds, and
    every agent makes dummy reports (mean one per two simulated hours), as a deployed agent does."""
    states = {}
    for i, person in enumerate(scenario.people):
        conf = workdir / f"{person.name}.toml"
        conf.write_text(
            f'[agent]\nscheme = "{scheme}"\nclock = "{spec}"\n'
            f'[ble]\nadvertise_adapter = "hci{i}"\nscan_adapters = ["hci{i}"]\nwatchdog_seconds = 120\n'
            f'[backend]\nurl = "{url}"\npublic_key = "{public}"\nca_file = "{pki.ca_file}"\n'
            "sync_interval_seconds = 31536000\n"
            "sync_jitter_seconds = 0\nsubmission_spread_seconds = 300\ndummy_traffic = true\n"
            "dummy_mean_interval_seconds = 7200\n"
            f"[risk.exposure_windows]\nscan_interval_seconds = {scan_interval}\n"
        )
        states[person.name] = (conf, workdir / "agents" / person.name)
    return states


def start_agents(
    procs: Processes, states: dict[str, tuple[Path, Path]], workdir: Path, env: dict[str, str]
) -> dict[str, subprocess.Popen[bytes]]:
    return {
        name: procs.start(
            [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run"],
            workdir / f"agent-{name}.log",
            env,
        )
        for name, (conf, state) in states.items()
    }


def report_positives(
    scenario: Scenario,
    states: dict[str, tuple[Path, Path]],
    backend_toml: Path,
    env: dict[str, str],
    agent_env: dict[str, str],
) -> None:
    """Each positive gets a TAN for their onset day and reports through ``proxitrace report``, as a user does."""
    for p in scenario.positives:
        onset = datetime.fromtimestamp(scenario.start + (p.day - p.onset_days_before) * DAY, UTC).date().isoformat()
        tan = cli("backend", "tan", "issue", "--config", str(backend_toml), "--onset", onset, env=env).stdout.strip()
        conf, state = states[p.person]
        args = ("--config", str(conf), "--state-dir", str(state), "report", "--tan", tan, "--onset", onset, "--yes")
        sent = cli(*args, env=agent_env)
        if sent.returncode != 0:
            raise RuntimeError(f"report by {p.person} failed: {sent.stderr.strip()}")


def in_parallel(
    states: dict[str, tuple[Path, Path]], command: Callable[[str, tuple[Path, Path]], T], workers: int = 4
) -> dict[str, T]:
    """``command`` for every person at once (a few at a time): each is a separate ``python -m agent``
    process that mostly starts up and waits on the backend, so running them side by side costs little more
    than one."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(states, pool.map(command, states, states.values()), strict=True))


def register_all(states: dict[str, tuple[Path, Path]], codes: list[str], env: dict[str, str]) -> None:
    """Every person's device registers (proof of work and enrolment code), all at once."""

    code_of = dict(zip(states, codes, strict=True))

    def register(name: str, paths: tuple[Path, Path]) -> subprocess.CompletedProcess[str]:
        conf, state = paths
        return cli("--config", str(conf), "--state-dir", str(state), "register", "--code", code_of[name], env=env)

    for name, reg in in_parallel(states, register).items():
        if reg.returncode != 0:
            raise RuntimeError(f"register {name}: {reg.stderr.strip()}")


def wait_until_up(
    states: dict[str, tuple[Path, Path]],
    agents: dict[str, subprocess.Popen[bytes]],
    deadline: float,
    stop: threading.Event | None,
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
        pause(0.1, stop)
    if waiting:
        raise RuntimeError(f"agents not advertising and scanning after a minute: {', '.join(sorted(waiting))}")
    return time.time()


def wait_for_url(
    log_path: Path, proc: subprocess.Popen[bytes], timeout: float = 30, after: int = 0, scheme: str = "https"
) -> str:
    """The URL the backend says it listens on, from its log past character ``after`` (a restarted
    backend appends to the log of the one before it). ``scheme`` is the one the caller started it with
    (the soak's backend runs without TLS): a URL of the other kind is not the backend it asked for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")[after:]
        found = re.search(rf"listening on ({re.escape(scheme)}://127\.0\.0\.1:\d+)", text)
        if found:
            return found[1]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the backend did not start: {log_path.read_text(errors='replace')[-500:]}")

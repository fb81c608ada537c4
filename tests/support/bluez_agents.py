"""Start real agents (proxitrace run) inside the VM and read what they stored."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class RunningAgent:
    adapter: str
    state_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def status(self) -> dict[str, object] | None:
        try:
            return json.loads((self.state_dir / "status.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class VmBackend:
    """``proxitrace backend serve`` on the guest's loopback: what EBID agents register with."""

    def __init__(self, workdir: Path, out_dir: Path) -> None:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)  # the VM has no network, maybe not even lo
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "backend.toml"
        self.config.write_text(
            f'[server]\ndata_dir = "{workdir / "data"}"\n'
            "[ebid]\npow_difficulty = 8\n"  # a cheap proof of work: the guest's CPU is emulated
        )
        keygen = _cli("backend", "keygen", "--config", str(self.config))
        found = re.search(r'public_key = "([^"]+)"', keygen.stdout)
        assert keygen.returncode == 0 and found, keygen.stderr
        self.public_key = found[1]
        log_path = out_dir / "backend.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "backend", "serve", "--config", str(self.config), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
            cwd=ROOT,
        )
        assert wait_for(lambda: "listening on" in log_path.read_text(errors="replace"), 180), log_path
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        assert url, log_path
        self.url = url[1]
        self._codes: list[str] = []

    def register(self, config: Path, state_dir: Path) -> None:
        if not self._codes:
            issued = _cli("backend", "enrol", "issue", "--config", str(self.config), "--count", "10")
            assert issued.returncode == 0, issued.stderr
            self._codes = issued.stdout.split()
        reg = _cli("--config", str(config), "--state-dir", str(state_dir), "register", "--code", self._codes.pop())
        assert reg.returncode == 0, reg.stderr

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command run in this process: a fresh interpreter costs 10-30 s under the VM's emulated CPU."""
    result = CliRunner().invoke(cli, list(args))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def start_agent(
    adapter: str,
    state_dir: Path,
    scheme: str,
    out_dir: Path,
    extra: list[str] | None = None,
    scan_adapter: str | None = None,
    backend: VmBackend | None = None,
) -> RunningAgent:
    """An agent advertising on ``adapter`` and scanning on ``scan_adapter`` (default: the same one).

    With a backend the agent syncs with it, and an EBID agent registers with it first.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir.parent / f"{state_dir.name}.toml"
    config.write_text(
        f'[agent]\nscheme = "{scheme}"\n'
        f'accept_unsynchronised_clock_testbed = true\n[ble]\nwatchdog_seconds = 60\nadvertise_adapter = "{adapter}"\n'
        f'scan_adapters = ["{scan_adapter or adapter}"]\n'
        + (f'[backend]\nurl = "{backend.url}"\npublic_key = "{backend.public_key}"\n' if backend else "")
    )
    if backend and scheme == "ebid":
        backend.register(config, state_dir)
    log_path = out_dir / f"agent-{state_dir.name}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--config",
            str(config),
            "--state-dir",
            str(state_dir),
            "run",
            "--log-level",
            "debug",
            *(extra or []),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ},
    )
    return RunningAgent(adapter, state_dir, proc, log_path)


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False

"""Start real agents (proxitrace run) inside the VM and read what they stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def start_agent(
    adapter: str,
    state_dir: Path,
    scheme: str,
    out_dir: Path,
    extra: list[str] | None = None,
    scan_adapter: str | None = None,
) -> RunningAgent:
    """An agent advertising on ``adapter`` and scanning on ``scan_adapter`` (default: the same one)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir.parent / f"{state_dir.name}.toml"
    config.write_text(
        f'[agent]\nscheme = "{scheme}"\n[ble]\nwatchdog_seconds = 60\nadvertise_adapter = "{adapter}"\n'
        f'scan_adapters = ["{scan_adapter or adapter}"]\n'
    )
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

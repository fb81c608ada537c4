"""What ``proxitrace run`` loads: a daemon lives for months on a Pi, so each module it imports and never
uses is RSS for nothing (issue 17: <= 60 MB). Without a backend configured it needs no HTTP client, no
list pipeline (numpy, protobuf), no backend, test-bed or plotting code; with one, those load when the
sync starts. Checked in a fresh interpreter, the way ``python -m agent run`` resolves its command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_THE_DAEMON = (
    "aiohttp",
    "numpy",
    "google.protobuf",
    "sqlite_utils",
    "matplotlib",
    "agent.server",
    "agent.testbed",
    "agent.sync.service",
    "agent.exposure",
    "agent.matching",
)
PROBE = """
import json, sys
import click
from agent.cli import cli
run = cli.get_command(click.Context(cli), "run")
import agent.daemon
print(json.dumps([run.name, sorted(sys.modules)]))
"""


def test_the_daemon_without_a_backend_imports_none_of_the_list_pipeline() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    name, modules = json.loads(out.stdout)
    loaded = {m for m in modules for banned in NOT_FOR_THE_DAEMON if m == banned or m.startswith(banned + ".")}
    assert name == "run" and "agent.daemon" in modules and "agent.store" in modules
    assert not loaded, f"proxitrace run imports {sorted(loaded)}"


def test_a_configured_backend_brings_the_sync_when_it_starts() -> None:
    probe = PROBE.replace("import agent.daemon", "import agent.daemon\nfrom agent.sync import SyncService")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    _, modules = json.loads(out.stdout)
    assert {"aiohttp", "agent.sync.service", "agent.exposure"} <= set(modules)

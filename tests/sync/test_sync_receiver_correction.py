"""One receiver RSSI correction rule (``agent.config.device_calibration``) for every path that scores a list.

The daemon's sync task, ``proxitrace sync`` and ``proxitrace match`` each match one released list against
the same sightings; for a device whose correction comes from the config, from its own measurement or from
the calibration table, all three must store the same exposure score, and that score must differ from the
uncorrected one (so a path that skipped the rule would fail here). Each case also offers a lower-ranked
source with another value, so the precedence config > measurement > table is checked on every path.
"""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import RunningBackend, backend_config, heard, running_backend
from support.sync_devices import issue, make_device

from agent.calibration import write_local
from agent.clock import DAY, ManualClock, SystemClock, start_of_day
from agent.config import device_calibration, load_config
from agent.daemon import Daemon
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow
from agent.signing_keys import public_key_base64, public_key_pem
from agent.store import Store

CORRECTION = -6.0  # -8 dBm - (-60 - 6) = 58 dB: the middle attenuation bucket instead of the near one (52 dB)


def proxitrace(config: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent", "--config", str(config), "--state-dir", str(state), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def table(path: Path, correction: float) -> Path:
    path.write_text(f"[default]\ntx_power = -8\nrssi_correction = {correction}\n")
    return path


def device(tmp: Path, name: str, source: str, url: str, public_b64: str) -> tuple[Path, Path]:
    """A config and a state dir whose correction comes from ``source`` (and a lower source disagrees)."""
    state = tmp / name
    calibration = ""
    if source == "config":
        calibration = f"rssi_correction = {CORRECTION}\n"
        write_local(state, -8, 3.0, time.time(), 100)  # outranked by the config
    elif source == "measurement":
        write_local(state, -8, CORRECTION, time.time(), 100)
        calibration = f'table = "{table(tmp / f"{name}-table.toml", -1.0)}"\n'  # outranked by the measurement
    elif source == "table":
        calibration = f'table = "{table(tmp / f"{name}-table.toml", CORRECTION)}"\n'
    else:  # uncorrected
        calibration = f'table = "{table(tmp / f"{name}-table.toml", 0.0)}"\n'
    config = tmp / f"{name}.toml"
    config.write_text(
        '[agent]\nscheme = "gaen"\naccept_unsynchronised_clock_testbed = true\n'
        f'[backend]\nurl = "{url}"\npublic_key = "{public_b64}"\nsync_jitter_seconds = 0\n'
        f"[calibration]\n{calibration}"
    )
    return config, state


def score(state: Path) -> float:
    store = Store.open(state)
    try:
        [record] = store.exposures()
        return record.score
    finally:
        store.close()


async def daemon_sync(config: Path, state: Path) -> None:
    """The daemon's sync task, as its supervisor runs it, until its first result."""
    daemon = Daemon(load_config(config), state, SystemClock())
    assert daemon.sync_settings is not None
    task = asyncio.create_task(daemon._sync(daemon.sync_settings))
    try:
        for _ in range(1000):
            if daemon.state.last_sync_at is not None:
                break
            await asyncio.sleep(0.01)
        assert daemon.state.last_sync_ok is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        daemon.store.close()


@dataclass(frozen=True)
class Released:
    backend: RunningBackend
    list_file: Path
    public_pem: Path
    heard: list[SightingWindow]


@pytest.fixture
async def released(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> AsyncIterator[Released]:
    """A backend (its clock at real time, so the commands' system clocks agree) that has released the
    key of a device heard the day before yesterday; the list as a file too, for ``proxitrace match``."""
    now = time.time()
    clock = ManualClock(now - 3 * 3600)  # the report is made three hours ago: its bucket has closed since
    contact = start_of_day(int(now) // DAY) - 30 * 3600  # the day before yesterday, 18:00 UTC
    async with running_backend(backend_config(tmp_path / "backend"), clock, signing_key) as rb:
        a = make_device(tmp_path, "uploader", rb.url, rb, http, clock, SchemeName.GAEN)
        a.ring.ensure(contact)
        windows = heard(a.ring.scheme(), contact, minutes=20, rssi=-60)
        keys = a.client.report_keys(SchemeName.GAEN, None, clock.now())
        await a.client.report(SchemeName.GAEN, await issue(http, rb, "tans"), None, keys)
        clock.set(time.time())
        async with http.get(f"{rb.url}/v2/gaen/exposed") as r:
            assert r.status == 200
            (tmp_path / "list.zip").write_bytes(await r.read())
        (tmp_path / "backend.pem").write_text(public_key_pem(rb.public_key))
        yield Released(rb, tmp_path / "list.zip", tmp_path / "backend.pem", windows)


@pytest.mark.parametrize("source", ["config", "measurement", "table"])
async def test_daemon_sync_and_match_score_one_list_alike(tmp_path: Path, released: Released, source: str) -> None:
    url, public_b64 = released.backend.url, public_key_base64(released.backend.public_key)
    scores: dict[str, float] = {}
    for path in ("daemon", "sync", "match", "uncorrected"):
        config, state = device(tmp_path, path, "none" if path == "uncorrected" else source, url, public_b64)
        store = Store.open(state)
        store.add_windows(released.heard)
        store.close()
        if path == "daemon":
            await daemon_sync(config, state)
        elif path == "sync":
            out = await asyncio.to_thread(proxitrace, config, state, "sync", "--json")
            assert out.returncode == 0 and json.loads(out.stdout)["matched_keys"] == 1, out.stderr
        else:
            match = ("match", "--list", str(released.list_file), "--public-key", str(released.public_pem))
            out = await asyncio.to_thread(proxitrace, config, state, *match)
            assert out.returncode == 0, out.stderr
        if path != "uncorrected":
            assert device_calibration(load_config(config), state).rssi_correction == CORRECTION
        scores[path] = score(state)
    assert scores["daemon"] == scores["sync"] == scores["match"] != scores["uncorrected"]

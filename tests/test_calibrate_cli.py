"""``proxitrace calibrate`` measuring a reference beacon on the simulated BlueZ, as a user runs it."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from agent.calibration import LOCAL_FILE, read_local
from agent.schemes.base import uuid128
from agent.sim.air_log import instances
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

ROOT = Path(__file__).resolve().parent.parent
DEAF_DB = 10.0  # this receiver reads 10 dB under a calibrated one: the simulated air loses 51 dB at 1 m, not 41


def beacon_address(bed: SimBed, tx_power: int) -> str:
    async def add() -> str:
        async with await SimControl.connect(bed.bus_address) as ctl:
            return await ctl.add_beacon({uuid128(0xFEAA): b"\x10\x00ref"}, x=1.0, tx_power=tx_power, interval_ms=100)

    ident = asyncio.run(add())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [i.address for i in instances(bed.air_records()) if i.adapter == f"beacon:{ident}"]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("the reference beacon never went on air")


def calibrate(bed: SimBed, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(state), "calibrate", "--seconds", "5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **bed.env},
    )


def test_calibrate_measures_the_reference_and_writes_the_correction(tmp_path: Path) -> None:
    config = {
        "adapters": [{"name": "hci0", "x": 0.0}],
        "tick_seconds": 0.1,
        "radio": {"loss_at_1m_db": 41.0 + DEAF_DB, "noise_sigma_db": 2.0},
    }
    with SimBed(config, tmp_path / "bed") as bed:
        address = beacon_address(bed, tx_power=0)
        state = tmp_path / "state"
        out = calibrate(bed, state, "--reference-tx", "0", "--distance", "1m", "--address", address, "--tx-power", "-4")
        assert out.returncode == 0, out.stderr
        local = read_local(state)
        assert local is not None and local["tx_power"] == -4
        assert abs(float(local["rssi_correction"]) - DEAF_DB) < 1.5  # type: ignore[arg-type]
        assert int(local["samples"]) >= 20  # type: ignore[call-overload]
        assert (state / LOCAL_FILE).stat().st_mode & 0o077 == 0 and state.stat().st_mode & 0o077 == 0
        assert address.lower() not in (state / LOCAL_FILE).read_text().lower()  # used while measuring only

        # a reference that is not there: a clear error, and the calibration already written is kept
        before = (state / LOCAL_FILE).read_text()
        missing = calibrate(bed, state, "--reference-tx", "0", "--address", "00:11:22:33:44:55")
        assert missing.returncode == 1 and "heard the reference only 0 times" in missing.stderr
        assert (state / LOCAL_FILE).read_text() == before


def test_calibrate_rejects_a_bad_distance(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "--state-dir",
            str(tmp_path),
            "calibrate",
            "--reference-tx",
            "0",
            "--address",
            "00:11:22:33:44:55",
            "--distance",
            "two metres",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "not a distance" in out.stderr
    assert not (tmp_path / LOCAL_FILE).exists()

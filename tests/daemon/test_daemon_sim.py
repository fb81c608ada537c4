"""proxitrace run as a user runs it, against the simulated BlueZ on a private D-Bus."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.schemes.base import SchemeName
from agent.sim.air_log import instances
from agent.sim.harness import SimBed
from agent.store import DB_FILE, Store

ROOT = Path(__file__).resolve().parent.parent.parent


def start(bed: SimBed, tmp: Path, name: str, adapter: str, scheme: str = "dp3t") -> subprocess.Popen[bytes]:
    (tmp / f"{name}.toml").write_text(
        f'[agent]\nscheme = "{scheme}"\n'
        f"accept_unsynchronised_clock_testbed = true\n[ble]\n"
        f'advertise_adapter = "{adapter}"\nscan_adapters = ["{adapter}"]\n'
    )
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--config",
            str(tmp / f"{name}.toml"),
            "--state-dir",
            str(tmp / name),
            "run",
            "--log-level",
            "debug",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **bed.env},
    )


def status(tmp: Path, name: str, bed: SimBed) -> dict[str, object] | None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(tmp / name), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **bed.env},
    )
    return json.loads(out.stdout) if out.returncode == 0 else None


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def heard(tmp: Path, name: str) -> set[bytes]:
    store = Store.open(tmp / name)
    try:
        return {w.ephemeral_id for w in store.windows(scheme=SchemeName.DP3T)}
    finally:
        store.close()


def test_two_daemons_see_each_other_and_stop_cleanly(tmp_path: Path) -> None:
    config = {"adapters": [{"name": "hci0", "x": 0.0}, {"name": "hci1", "x": 1.5}], "tick_seconds": 0.2}
    with SimBed(config, tmp_path / "bed") as bed:
        a, b = start(bed, tmp_path, "a", "hci0"), start(bed, tmp_path, "b", "hci1")
        try:
            for name in ("a", "b"):
                assert wait_for(lambda n=name: (status(tmp_path, n, bed) or {}).get("advertising") is True, 60), (
                    tmp_path / f"{name}.log"
                ).read_text()[-3000:]
            assert wait_for(lambda: heard(tmp_path, "a") and heard(tmp_path, "b"), 40)
            snapshot = status(tmp_path, "a", bed)
            assert snapshot is not None and snapshot["running"] is True and snapshot["scheme"] == "dp3t"
            assert any(ad["scanning"] for ad in snapshot["adapters"])  # type: ignore[union-attr]
            assert "ephemeral_id" not in json.dumps(snapshot)
        finally:
            for proc in (a, b):
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(30) for proc in (a, b)]
        assert codes == [0, 0]
        assert bed.air_summary().violations == ()
        on_air = instances(bed.air_records())
        assert {i.adapter for i in on_air} == {"hci0", "hci1"}
        assert [i for i in on_air if i.off is None] == []  # SIGTERM unregistered both adverts
        assert {i.ended_by for i in on_air} == {"unregistered"}  # not a crash, not a client dying
    for name, other in (("a", "b"), ("b", "a")):
        ids = heard(tmp_path, name)
        assert ids, f"{name} stored nothing from {other}"
        conn = sqlite3.connect(tmp_path / name / DB_FILE)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT rssi_min, rssi_max, count FROM sightings").fetchall()
        assert all(-100 < lo <= hi < 0 and n >= 1 for lo, hi, n in rows)


def test_daemon_with_a_real_backend_syncs_and_shuts_down_cleanly(tmp_path: Path) -> None:
    backend_toml = tmp_path / "backend.toml"
    backend_toml.write_text(f'[server]\ndata_dir = "{tmp_path / "backend"}"\n')
    keygen = subprocess.run(
        [sys.executable, "-m", "agent", "backend", "keygen", "--config", str(backend_toml)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    assert keygen.returncode == 0 and public, keygen.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(backend_toml), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        url = next(m[1] for line in server.stderr if (m := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)))
        config = {"adapters": [{"name": "hci0", "x": 0.0}, {"name": "hci1", "x": 1.0}], "tick_seconds": 0.2}
        with SimBed(config, tmp_path / "bed") as bed:
            (tmp_path / "a.toml").write_text(
                '[agent]\nscheme = "gaen"\n'
                "accept_unsynchronised_clock_testbed = true\n[ble]\n"
                'advertise_adapter = "hci0"\nscan_adapters = ["hci0"]\n'
                f'[backend]\nurl = "{url}"\npublic_key = "{public[1]}"\nsync_jitter_seconds = 1\n'
            )
            agent = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "--config",
                    str(tmp_path / "a.toml"),
                    "--state-dir",
                    str(tmp_path / "a"),
                    "run",
                ],
                cwd=ROOT,
                stdout=(tmp_path / "a.log").open("wb"),
                stderr=subprocess.STDOUT,
                env={**os.environ, **bed.env},
            )
            try:
                assert wait_for(lambda: (status(tmp_path, "a", bed) or {}).get("last_sync_ok") is True, 60), (
                    tmp_path / "a.log"
                ).read_text()[-3000:]
                snapshot = status(tmp_path, "a", bed)
                assert snapshot and snapshot["advertising"] is True and snapshot["exposure"] == "none"
            finally:
                agent.send_signal(signal.SIGTERM)
                assert agent.wait(30) == 0
            assert [i for i in instances(bed.air_records()) if i.off is None] == []
        conn = sqlite3.connect(tmp_path / "a" / DB_FILE)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)

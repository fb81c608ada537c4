"""kill -9 of ``proxitrace run`` in the middle of heavy ingest, 20 times over one state dir.

Forty peers flood the simulated air and the daemon commits every 0.3 s (``agent.flush_seconds``), so a
kill at a random moment often lands inside a write. Before each kill a reader counts the sightings the
daemon has committed; after it the database must pass ``integrity_check`` and still hold at least that
many, and the next daemon must start on it.
"""

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.store import DB_FILE

ROOT = Path(__file__).resolve().parent.parent.parent
PEERS = 40
ATTEMPTS = 20


def committed(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT coalesce(sum(count), 0) FROM sightings").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()


def add_peers(bed: SimBed) -> None:
    async def go() -> None:
        async with await SimControl.connect(bed.bus_address) as ctl:
            for i in range(PEERS):
                await ctl.add_beacon({uuid128(0xFD6F): os.urandom(20)}, x=1.0 + i % 5, interval_ms=50)

    asyncio.run(go())


@pytest.mark.slow
def test_kill9_during_heavy_ingest_keeps_the_store_whole(tmp_path: Path) -> None:
    rng = random.Random(6)
    config = {"adapters": [{"name": "hci0"}], "tick_seconds": 0.05, "device_timeout_seconds": 30}
    state, conf = tmp_path / "state", tmp_path / "agent.toml"
    conf.write_text(
        '[agent]\nscheme = "gaen"\nflush_seconds = 0.3\n'
        'accept_unsynchronised_clock_testbed = true\n[ble]\nadvertise_adapter = "hci0"\nscan_adapters = ["hci0"]\n'
    )
    db = state / DB_FILE
    with SimBed(config, tmp_path / "bed", log_level="WARNING") as bed:
        add_peers(bed)
        argv = [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run"]
        seen = 0
        for attempt in range(ATTEMPTS):
            log = (tmp_path / f"agent-{attempt}.log").open("wb")
            daemon = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **bed.env}
            )
            deadline = time.monotonic() + 60
            while committed(db) <= seen and time.monotonic() < deadline:  # ingesting and flushing again
                assert daemon.poll() is None, (tmp_path / f"agent-{attempt}.log").read_text()[-2000:]
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 1.0))  # anywhere in the flush cycle, often inside a transaction
            before = committed(db)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
            log.close()
            assert before > seen, f"attempt {attempt}: nothing new was committed"
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            after = committed(db)
            assert after >= before, f"attempt {attempt}: {before - after} committed sightings lost"
            seen = after
    assert seen > ATTEMPTS * PEERS

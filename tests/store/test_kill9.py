"""kill -9 during heavy ingest, 20 times: the database stays intact and no committed sighting is lost."""

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from agent.store import DB_FILE, Store

CHILD = Path(__file__).with_name("ingest_child.py")
ROOT = Path(__file__).resolve().parent.parent.parent


def test_kill9_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random(9)
    reported = 0
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # it is ingesting
        assert first.strip().isdigit(), first
        time.sleep(rng.uniform(0.0, 0.3))
        child.kill()
        rest = child.stdout.read().split()
        child.wait()
        reported = int(rest[-1]) if rest else int(first)
        conn = sqlite3.connect(tmp_path / DB_FILE)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        store = Store.open(tmp_path)
        stored = store.sighting_counts(0)[0]
        store.close()
        assert stored >= reported, f"{reported - stored} committed sightings lost"
    assert reported > 20 * 2000

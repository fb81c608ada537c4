"""``proxitrace run`` under faults, as systemd would see them: a state directory that cannot hold SQLite (one line,
exit 78, nothing written), a corrupt database at start (moved aside, loud in the log and in ``status``), and a
disk that fills while it runs (nothing crashes, ``status`` says so, the windows are written when space returns).
Real file systems: a tmpfs of a few MiB (root only), a FIFO where SQLite wants the WAL's shared memory."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support.filesystems import LockHeld, SmallFs

from agent.cli.run import EXIT_STATE_DIR_UNUSABLE
from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.store import DB_FILE

ROOT = Path(__file__).resolve().parent.parent.parent
BED = {"adapters": [{"name": "hci0"}], "tick_seconds": 0.2}


def argv(conf: Path, state: Path, *cmd: str) -> list[str]:
    return [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), *cmd]


def config(tmp: Path) -> Path:
    conf = tmp / "agent.toml"
    conf.write_text(
        '[agent]\nscheme = "gaen"\nflush_seconds = 0.5\n'
        'accept_unsynchronised_clock_testbed = true\n[ble]\nadvertise_adapter = "hci0"\nscan_adapters = ["hci0"]\n'
    )
    return conf


def refused(tmp: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(config(tmp), state, "run"), capture_output=True, text=True, timeout=60, cwd=ROOT)


def snapshot(state: Path) -> dict[str, object]:
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def wait_for(predicate, timeout: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(log.read_text()[-3000:])


def add_peer(bed: SimBed) -> None:
    async def go() -> None:
        async with await SimControl.connect(bed.bus_address) as ctl:
            await ctl.add_beacon({uuid128(0xFD6F): os.urandom(20)}, x=1.0, interval_ms=100)

    asyncio.run(go())


def test_a_read_only_state_dir_exits_78_with_one_line(tmp_path: Path, small_fs: SmallFs) -> None:
    small_fs.mount(256)
    state = small_fs.path / "state"
    state.mkdir(mode=0o700)
    small_fs.remount(read_only=True)
    out = refused(tmp_path, state)
    assert out.returncode == EXIT_STATE_DIR_UNUSABLE, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert str(state / DB_FILE) in out.stderr and "read-only file system" in out.stderr
    assert "Traceback" not in out.stderr
    assert os.listdir(state) == []


def test_a_state_dir_without_wal_shared_memory_exits_78_and_leaves_nothing(tmp_path: Path) -> None:
    """As on a 9p or network mount: today's ``sqlite3.OperationalError: disk I/O error`` traceback, now a line."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.mkfifo(state / (DB_FILE + "-shm"))
    out = refused(tmp_path, state)
    assert out.returncode == EXIT_STATE_DIR_UNUSABLE, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert str(state / DB_FILE) in lines[0] and "cannot map the WAL's shared memory" in lines[0]
    assert sorted(os.listdir(state)) == [DB_FILE + "-shm"]


def test_a_state_dir_whose_wal_index_another_process_locks_exits_78_naming_it(tmp_path: Path) -> None:
    """A POSIX lock SQLite cannot share, held by another process: one line with the path and the holder's pid,
    the exit code systemd does not restart on, and no database left behind."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with LockHeld(state / (DB_FILE + "-shm")) as held:
        out = refused(tmp_path, state)
    assert out.returncode == EXIT_STATE_DIR_UNUSABLE, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert str(state / DB_FILE) in lines[0] and f"held by another process (pid {held.pid})" in lines[0]
    assert sorted(os.listdir(state)) == [DB_FILE + "-shm"]


def test_a_corrupt_database_is_moved_aside_loudly_and_the_agent_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    damaged = b"SQLite format 3\0" + os.urandom(16_368)  # a header, then garbage
    (state / DB_FILE).write_bytes(damaged)
    log = tmp_path / "agent.log"
    with SimBed(BED, tmp_path / "bed", log_level="WARNING") as bed, log.open("wb") as out:
        add_peer(bed)
        daemon = subprocess.Popen(
            argv(config(tmp_path), state, "run"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **bed.env},
        )
        try:
            wait_for(lambda: snapshot(state).get("advertising") is True, 60, log)
            wait_for(lambda: snapshot(state).get("distinct_ids_15min", 0) > 0, 30, log)
            notes = snapshot(state)["notes"]
            assert any("moved aside to agent.db.corrupt-" in n for n in notes)  # type: ignore[union-attr]
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
    asides = [p for p in state.iterdir() if p.name.startswith(DB_FILE + ".corrupt-")]
    assert len(asides) == 1 and asides[0].read_bytes() == damaged
    assert any(
        line.startswith("ERROR agent.store") and "moved it aside" in line for line in log.read_text().splitlines()
    )


def test_disk_full_while_running_keeps_sightings_and_status_says_so(tmp_path: Path, small_fs: SmallFs) -> None:
    small_fs.mount(16 * 1024)
    state = small_fs.path / "state"
    log = tmp_path / "agent.log"
    with SimBed(BED, tmp_path / "bed", log_level="WARNING") as bed, log.open("wb") as out:
        add_peer(bed)
        daemon = subprocess.Popen(
            argv(config(tmp_path), state, "run"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **bed.env},
        )
        try:
            wait_for(lambda: snapshot(state).get("distinct_ids_15min", 0) > 0, 60, log)
            small_fs.fill()
            filled_at = time.time()
            wait_for(lambda: snapshot(state).get("store_problem") == "disk full", 30, log)
            wait_for(lambda: snapshot(state).get("unwritten_windows", 0) > 0, 90, log)  # the next minute's window
            status = subprocess.run(
                argv(config(tmp_path), state, "status"), capture_output=True, text=True, timeout=60, cwd=ROOT
            )
            assert "CANNOT WRITE (disk full)" in status.stdout
            assert all(t["restarts"] == 0 for t in snapshot(state)["tasks"])  # type: ignore[union-attr,index]
            small_fs.free()
            wait_for(lambda: snapshot(state).get("store_problem") is None, 30, log)
            assert snapshot(state)["unwritten_windows"] == 0
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
    conn = sqlite3.connect(state / DB_FILE)
    newest = conn.execute("SELECT max(window_start) FROM sightings").fetchone()[0]
    assert newest >= int(filled_at) - int(filled_at) % 60  # heard while the disk was full, and kept
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

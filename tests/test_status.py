import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from agent.status import (
    STALE_SECONDS,
    STATUS_FILE,
    AdapterStatus,
    AgentStatus,
    BriefState,
    TaskStatus,
    _rewrite_in_place,
    brief_status,
    read_status,
    render_status,
    write_status,
)
from agent.timetrust import TimeState, TimeTrust

SNAPSHOT = AgentStatus(
    pid=4242,
    started_at=1000.0,
    updated_at=4590.0,
    scheme="gaen",
    advertising=True,
    seconds_since_rotation=312.0,
    rotation_failures=0,
    sightings_per_minute=41.5,
    distinct_ids_15min=7,
    db_size_bytes=3 * 1_048_576,
    last_sync_at=4000.0,
    last_sync_ok=True,
    exposure="none",
    adapters=(AdapterStatus("hci0", True, True, True, 4589.0), AdapterStatus("hci1", False, False, False)),
    tasks=(TaskStatus("scanner:hci1", False, 4, "BleakError: adapter 'hci1' not found"),),
)


def test_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    path = write_status(tmp_path, SNAPSHOT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]
    assert read_status(tmp_path) == SNAPSHOT


def test_missing_or_garbled_status_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text("{not json")
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text(json.dumps({"pid": 1}))
    assert read_status(tmp_path) is None


def test_render_shows_what_an_operator_needs() -> None:
    text = render_status(SNAPSHOT, now=4600.0, pid_alive=True)
    assert "running (pid 4242" in text
    assert "advertising on; last rotation 312 s ago" in text
    assert "41.5 sightings/min, 7 distinct IDs" in text
    assert "hci1: MISSING" in text
    assert "scanner:hci1: STOPPED, 4 restarts" in text
    assert "NOT RUNNING" in render_status(SNAPSHOT, now=4600.0, pid_alive=False)
    assert "stale" in render_status(SNAPSHOT, now=9600.0, pid_alive=True)


def test_store_trouble_and_flood_drops_are_shown_and_round_trip(tmp_path: Path) -> None:
    troubled = replace(
        SNAPSHOT,
        advertising=False,
        advertising_problem="registration failing (rejected); DBusError[org.bluez.Error.NotPermitted] (rejected)",
        store_problem="disk full",
        unwritten_windows=812,
        unwritten_dropped=3,
        flood_dropped=120_000,
        asyncio_tasks=23,
    )
    write_status(tmp_path, troubled)
    assert read_status(tmp_path) == troubled
    text = render_status(troubled, 4600.0, True)
    assert "advertising OFF (registration failing (rejected); DBusError[org.bluez.Error.NotPermitted]" in text
    assert "CANNOT WRITE (disk full): 812 windows held in memory, 3 dropped" in text
    assert "120000 sightings of new IDs past the per-minute cap dropped" in text


def test_a_full_disk_rewrites_the_snapshot_in_place(tmp_path: Path) -> None:
    """The file is whole blocks, so a later snapshot fits in the blocks the last one holds."""
    write_status(tmp_path, SNAPSHOT)
    size = (tmp_path / STATUS_FILE).stat().st_size
    assert size % 4096 == 0
    assert _rewrite_in_place(tmp_path / STATUS_FILE, json.dumps({"pid": 1}).encode())
    assert (tmp_path / STATUS_FILE).stat().st_size == size
    assert json.loads((tmp_path / STATUS_FILE).read_text()) == {"pid": 1}


def _live(**changes: object) -> AgentStatus:
    base: dict[str, object] = {"tasks": (), "time": TimeState(TimeTrust.SYNCHRONISED, 4590.0)}
    return replace(SNAPSHOT, **{**base, **changes})  # type: ignore[arg-type]


def test_brief_says_ok_with_the_key_facts_on_one_line() -> None:
    brief = brief_status(_live(), now=4600.0, pid_alive=True)
    assert (brief.state, brief.why, brief.exit_code) == (BriefState.OK, (), 0)
    assert brief.line == (
        "state=ok why=- advertising=on last_sync_age_s=600 sync=ok time=synchronised time_trusted=yes "
        "exposure=none report_pending=no scheme=gaen"
    )


def test_brief_state_order_and_exit_codes() -> None:
    assert brief_status(_live(exposure="exposed"), 4600.0, True).state is BriefState.EXPOSED
    pending = brief_status(_live(exposure="exposed", report_pending=True), 4600.0, True)
    assert (pending.state, pending.exit_code) == (BriefState.REPORT_PENDING, 0)  # the wearer must act first
    cases = {
        "sync-failing": _live(last_sync_ok=False),
        "not-registered": _live(last_sync_ok=False, needs_registration=True),
        "not-advertising": _live(advertising=False),
        "no-adapter": _live(adapters=(AdapterStatus("hci0", False, False, False),)),
        "store-cannot-write": _live(store_problem="disk full"),
        "time-unsynchronised": _live(time=TimeState(TimeTrust.UNSYNCHRONISED, 4590.0), advertising=False),
    }
    for why, snapshot in cases.items():
        brief = brief_status(snapshot, 4600.0, True)
        assert (brief.state, brief.why, brief.exit_code) == (BriefState.NEEDS_ATTENTION, (why,), 1), why
        assert f"state=needs-attention why={why} " in brief.line
    erased = _live(exposure="exposed", advertising=False, registering_again=True)  # no EBIDs until re-registered
    assert brief_status(erased, 4600.0, True).state is BriefState.EXPOSED
    exposed_and_broken = brief_status(_live(exposure="exposed", advertising=False), 4600.0, True)
    assert exposed_and_broken.state is BriefState.NEEDS_ATTENTION and "exposure=exposed" in exposed_and_broken.line
    dead = brief_status(_live(), 4600.0, pid_alive=False)
    assert (dead.why, dead.exit_code) == (("not-running",), 3)
    assert brief_status(_live(), 4600.0 + STALE_SECONDS, True).why == ("stale-status",)
    none = brief_status(None, 4600.0, True)
    assert (none.line, none.exit_code) == ("state=needs-attention why=no-status", 1)


def test_the_new_snapshot_fields_round_trip(tmp_path: Path) -> None:
    snapshot = _live(report_pending=True, needs_registration=True)
    write_status(tmp_path, snapshot)
    assert read_status(tmp_path) == snapshot


def brief_cli(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(state_dir), "status", "--brief", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_brief_through_the_cli(tmp_path: Path) -> None:
    now = time.time()
    live = _live(pid=os.getpid(), started_at=now - 600, updated_at=now, last_sync_at=now - 30, report_pending=True)
    write_status(tmp_path, live)
    out = brief_cli(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("state=report-pending why=- advertising=on last_sync_age_s=")
    assert out.stdout.count("\n") == 1 and "time_trusted=yes" in out.stdout

    write_status(tmp_path, replace(live, last_sync_ok=False, needs_registration=True))
    out = brief_cli(tmp_path)
    assert (out.returncode, out.stdout.split()[:2]) == (1, ["state=needs-attention", "why=not-registered"])

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_status(tmp_path, replace(live, pid=gone.pid))
    out = brief_cli(tmp_path)
    assert (out.returncode, out.stdout.split()[1]) == (3, "why=not-running")

    empty = tmp_path / "empty"
    empty.mkdir()
    out = brief_cli(empty)
    assert (out.returncode, out.stdout) == (1, "state=needs-attention why=no-status\n")
    out = brief_cli(tmp_path, "--json")
    assert out.returncode == 2 and "--json and --brief: choose one" in out.stderr

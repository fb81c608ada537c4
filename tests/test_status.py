import json
import stat
from dataclasses import replace
from pathlib import Path

from agent.status import (
    STATUS_FILE,
    AdapterStatus,
    AgentStatus,
    TaskStatus,
    _rewrite_in_place,
    read_status,
    render_status,
    write_status,
)

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

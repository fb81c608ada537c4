import json
import stat
from pathlib import Path

from agent.status import STATUS_FILE, AdapterStatus, AgentStatus, TaskStatus, read_status, render_status, write_status

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

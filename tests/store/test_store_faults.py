"""The store under faults a wearable meets over weeks: a disk that fills or turns read-only while flushing, a
state directory that cannot hold a database at all, a corrupt file at start. Real file systems throughout
(a tmpfs of a few hundred KiB, a FIFO where SQLite wants its WAL shared memory)."""

import os
import stat
from pathlib import Path

import pytest
from support.filesystems import FailingFs, LockHeld, SmallFs

import agent.store.aggregator
from agent.schemes.base import SchemeName
from agent.store import DB_FILE, FloodCap, SightingAggregator, Store, StoreError, StoreUnusable

T0 = 1_780_000_020


def hear(agg: SightingAggregator, ids: range, t: float, rssi: int = -60) -> None:
    for i in ids:
        agg.add(SchemeName.GAEN, i.to_bytes(16, "big"), t, rssi, -8, b"\x01\x02\x03\x04")


def rows(store: Store) -> dict[bytes, tuple[int, int, int]]:
    return {
        r[0]: (r[1], r[2], r[3])
        for r in store.db.conn.execute(
            "SELECT id, count, rssi_min, rssi_max FROM sightings WHERE window_start = ?", (T0 - T0 % 60,)
        )
    }


def test_disk_full_while_flushing_keeps_windows_in_memory_and_writes_them_when_space_returns(
    small_fs: SmallFs,
) -> None:
    small_fs.mount(512)
    store = Store.open(small_fs.path / "state")
    agg = SightingAggregator(cap=FloodCap(new_per_minute=10_000))  # a crowd, not a flood
    small_fs.fill()
    hear(agg, range(4000), T0)
    assert store.flush(agg) == 0  # nothing raises
    assert store.write_error == "disk full"
    assert store.unwritten_windows == 4000
    hear(agg, range(2000), T0 + 5, rssi=-50)  # the same windows again, folded, and nothing new
    assert store.flush(agg) == 0
    assert store.unwritten_windows == 4000
    small_fs.free()
    assert store.flush(agg) == 4000
    assert store.write_error is None and store.unwritten_windows == 0
    stored = rows(store)
    assert len(stored) == 4000
    assert stored[(1).to_bytes(16, "big")] == (2, -60, -50)  # both callbacks, merged
    assert stored[(3999).to_bytes(16, "big")] == (1, -60, -60)
    store.close()


def test_held_windows_stop_at_the_bound_and_the_rest_are_counted(
    small_fs: SmallFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.store.aggregator, "MAX_UNWRITTEN_WINDOWS", 1000)
    small_fs.mount(512)
    store = Store.open(small_fs.path / "state")
    agg = SightingAggregator(cap=FloodCap(new_per_minute=10_000))  # a crowd, not a flood
    small_fs.fill()
    hear(agg, range(1500), T0)
    store.flush(agg)
    assert (store.unwritten_windows, store.unwritten_dropped) == (1000, 500)
    hear(agg, range(1500), T0 + 1)  # held windows still take their callbacks; the dropped stay dropped
    store.flush(agg)
    assert (store.unwritten_windows, store.unwritten_dropped) == (1000, 1000)
    small_fs.free()
    assert store.flush(agg) == 1000
    assert all(count == 2 for count, _, _ in rows(store).values())
    store.close()


def test_a_file_system_turning_read_only_under_the_store_holds_windows_in_memory(failing_fs: FailingFs) -> None:
    failing_fs.mount()
    store = Store.open(failing_fs.path / "state")
    agg = SightingAggregator()
    hear(agg, range(100), T0)
    assert store.flush(agg) == 100
    failing_fs.fail()  # the kernel remounts it read-only, files still open
    hear(agg, range(200), T0 + 1)
    assert store.flush(agg) == 0
    assert store.write_error is not None and "read-only" in store.write_error
    assert store.unwritten_windows == 200
    assert len(rows(store)) == 100  # what was committed before is still readable
    store.close()


def test_a_read_only_state_dir_is_refused_at_open_naming_path_and_cause(small_fs: SmallFs) -> None:
    small_fs.mount(256)
    (small_fs.path / "state").mkdir(mode=0o700)
    small_fs.remount(read_only=True)
    with pytest.raises(StoreUnusable) as caught:
        Store.open(small_fs.path / "state")
    assert str(small_fs.path / "state" / DB_FILE) in str(caught.value)
    assert "read-only file system" in str(caught.value)
    assert os.listdir(small_fs.path / "state") == []


def test_no_wal_shared_memory_is_refused_at_open_and_leaves_nothing(tmp_path: Path) -> None:
    """A FIFO where ``agent.db-shm`` goes: a real file the kernel cannot size or map, so SQLite fails exactly as
    on a 9p or network mount without shared mmap (SQLITE_IOERR_SHMOPEN, "disk I/O error")."""
    os.mkfifo(tmp_path / (DB_FILE + "-shm"))
    with pytest.raises(StoreUnusable, match="cannot map the WAL's shared memory") as caught:
        Store.open(tmp_path)
    assert str(tmp_path / DB_FILE) in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == [DB_FILE + "-shm"]  # no half-made database left behind


def corrupt_after_first_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:8192] = os.urandom(4096)
    path.write_bytes(bytes(data))


def test_a_corrupt_database_is_moved_aside_and_a_fresh_store_starts(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    agg = SightingAggregator()
    hear(agg, range(3000), T0)
    store.flush(agg)
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    corrupt_after_first_page(tmp_path / DB_FILE)
    damaged = (tmp_path / DB_FILE).read_bytes()
    store = Store.open(tmp_path, move_aside_corrupt=True)
    assert store.moved_aside is not None and store.moved_aside.name.startswith(DB_FILE + ".corrupt-")
    assert store.moved_aside.read_bytes() == damaged  # kept for a post-mortem
    assert stat.S_IMODE(store.moved_aside.stat().st_mode) == 0o600
    assert rows(store) == {}
    hear(agg, range(10), T0)
    assert store.flush(agg) == 10
    store.close()
    reopened = Store.open(tmp_path, move_aside_corrupt=True)
    assert reopened.moved_aside is None and len(rows(reopened)) == 10
    reopened.close()


def test_a_file_that_is_not_a_database_is_moved_aside_only_when_asked(tmp_path: Path) -> None:
    junk = os.urandom(8192)
    (tmp_path / DB_FILE).write_bytes(junk)
    with pytest.raises(StoreError, match="not a usable SQLite database"):  # the CLI tools refuse, untouched
        Store.open(tmp_path)
    assert (tmp_path / DB_FILE).read_bytes() == junk
    store = Store.open(tmp_path, move_aside_corrupt=True)
    assert store.moved_aside is not None
    assert store.db.conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    store.close()


def test_a_conflicting_lock_on_the_wal_index_is_named_with_its_holder_and_nothing_changes(tmp_path: Path) -> None:
    """Another process write-locks the WAL index's DMS byte (SQLite only ever read-locks it while in use): SQLite
    gives up with "locking protocol" after its own retries, which the store must not blame on the mount."""
    Store.open(tmp_path).close()
    before = (tmp_path / DB_FILE).read_bytes()
    with LockHeld(tmp_path / (DB_FILE + "-shm")) as held, pytest.raises(StoreUnusable) as caught:
        Store.open(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / DB_FILE}: cannot use the database here")
    assert f"{DB_FILE}-shm is held by another process (pid {held.pid}) with a write lock" in message
    assert (tmp_path / DB_FILE).read_bytes() == before

import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlite_utils

from agent.clock import ManualClock
from agent.schemes.base import SchemeName
from agent.sightings import RawSighting, SightingWindow
from agent.store import (
    DB_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    ExposureRecord,
    FloodCap,
    OwnKey,
    SightingAggregator,
    Store,
    StoreError,
)

T0 = 1_780_000_000.0  # a multiple of 60 plus 40 s


def raw(ephid: bytes, t: float, rssi: int, tx: int | None = -8, scheme: SchemeName = SchemeName.GAEN) -> RawSighting:
    return RawSighting(scheme, ephid, t, rssi, tx, b"\x01\x02\x03\x04", "hci0")


def test_files_are_private_from_creation(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store.open(state)
    agg = SightingAggregator()
    agg.add_sighting(raw(os.urandom(16), T0, -60))
    store.flush(agg)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = sorted(p.name for p in state.iterdir())
    assert files == [DB_FILE, DB_FILE + "-shm", DB_FILE + "-wal"]
    for name in files:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_aggregation_folds_callbacks_into_one_row_per_id_and_window(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    agg = SightingAggregator()
    a, b = os.urandom(16), os.urandom(16)
    window = int(T0) - int(T0) % 60
    for i in range(40):  # 40 callbacks of one peer in one window, split over two flushes
        agg.add_sighting(raw(a, window + i, -70 + i % 5))
        if i == 19:
            assert store.flush(agg) == 1
    agg.add_sighting(raw(b, window + 5, -80, tx=None))
    agg.add_sighting(raw(a, window + 61, -50))  # next window
    assert store.flush(agg) == 3
    rows = {(w.ephemeral_id, w.window_start): w for w in store.windows()}
    assert len(rows) == 3
    first = rows[(a, window)]
    assert (first.count, first.rssi_min, first.rssi_max) == (40, -70, -66)
    assert first.rssi_sum == sum(-70 + i % 5 for i in range(40))
    assert (first.first_seen, first.last_seen) == (window, window + 39)
    assert first.tx_power == -8 and first.metadata == b"\x01\x02\x03\x04"
    assert rows[(b, window)].tx_power is None
    assert rows[(a, window + 60)].count == 1
    assert store.sighting_counts(window) == (42, 2)
    assert [w.ephemeral_id for w in store.windows_for_ids([b])] == [b]
    assert list(store.windows(scheme=SchemeName.DP3T)) == []


def test_own_keys_credentials_lists_and_exposures(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    key = OwnKey(SchemeName.DP3T, "chain", T0, T0 + 86400, os.urandom(64), {"start_day": 20601})
    store.put_own_key(key)
    assert store.own_keys(SchemeName.DP3T) == [key]
    store.replace_own_keys(SchemeName.DP3T, "chain", [])
    assert store.own_keys(SchemeName.DP3T) == []
    store.set_credential("ebid", {"client_id": "c1", "secret": "s"}, T0)
    assert store.credential("ebid") == {"client_id": "c1", "secret": "s"}
    store.delete_credential("ebid")
    assert store.credential("ebid") is None
    assert not store.is_list_processed("ab" * 32)
    low = ExposureRecord(20601, SchemeName.GAEN, False, 4.0, {"why": "low"}, T0)
    high = ExposureRecord(20601, SchemeName.GAEN, True, 22.5, {"why": "high"}, T0 + 1)
    store.record_exposures([low], processed=("ab" * 32, "gaen", 10, T0))
    store.record_exposures([high])
    store.record_exposures([low])  # a later, weaker run never lowers a day's result
    assert store.is_list_processed("ab" * 32)
    [only] = store.exposures()
    assert (only.notify, only.score, only.explanation) == (True, 22.5, {"why": "high"})


def test_retention_with_the_simulated_clock_leaves_nothing_older(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = Store.open(tmp_path)
    agg = SightingAggregator()
    for day in range(25):
        t = clock.now()
        agg.add_sighting(raw(os.urandom(16), t, -60))
        store.flush(agg)
        store.put_own_key(OwnKey(SchemeName.GAEN, "tek", t, t + 86400, os.urandom(16), {}))
        store.record_exposures(
            [ExposureRecord(int(t // 86400), SchemeName.GAEN, False, 1.0, {}, t)],
            processed=(f"{day:064x}", "gaen", 1, t),
        )
        store.enforce_retention(clock.now(), days=14)
        clock.set(t + 86400)
    cutoff = clock.now() - 86400 - 14 * 86400  # the last retention run was a day ago
    windows = list(store.windows())
    assert len(windows) == 14  # of 25 days written, the last 14
    assert min(w.window_start for w in windows) >= cutoff
    assert min(k.valid_until for k in store.own_keys(SchemeName.GAEN)) >= cutoff
    assert min(e.day for e in store.exposures()) >= cutoff // 86400
    oldest = store.db.conn.execute("SELECT min(processed_at) FROM processed_lists").fetchone()[0]
    assert oldest >= cutoff


def test_retention_gives_pages_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    agg = SightingAggregator(cap=FloodCap(new_per_minute=20_000))  # a big store fast, not a crowd
    for i in range(20_000):
        agg.add_sighting(raw(os.urandom(16), T0 + i % 60, -60))
    store.flush(agg)
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages_before = store.db.conn.execute("PRAGMA page_count").fetchone()[0]
    store.enforce_retention(T0 + 30 * 86400)
    assert store.db.conn.execute("PRAGMA page_count").fetchone()[0] < pages_before / 4


def test_migration_from_version_1_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    ephid = os.urandom(16)
    conn.execute(
        "INSERT INTO sightings VALUES ('gaen', ?, 1780000020, 3, -70, -60, -195, -8, x'aabbccdd', "
        "1780000021.5, 1780000050.0)",
        (ephid,),
    )
    conn.execute("INSERT INTO own_keys VALUES ('gaen', 'tek', 1.0, 2.0, x'00', '{}')")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    store = Store.open(tmp_path)
    assert store.db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    [w] = list(store.windows())
    assert (w.scheme, w.ephemeral_id, w.count, w.rssi_sum, w.metadata) == (
        SchemeName.GAEN,
        ephid,
        3,
        -195,
        bytes.fromhex("aabbccdd"),
    )
    assert (w.first_seen, w.last_seen) == (1780000021.0, 1780000050.0)
    assert len(store.own_keys(SchemeName.GAEN)) == 1
    assert "credentials" in sqlite_utils.Database(store.db.conn).table_names()


def test_newer_or_corrupt_databases_are_refused_untouched(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(tmp_path)
    other = tmp_path / "corrupt"
    other.mkdir()
    junk = os.urandom(8192)
    (other / DB_FILE).write_bytes(junk)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store.open(other)
    assert (other / DB_FILE).read_bytes() == junk


def test_no_address_location_or_person_can_be_stored(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    columns = {c.name for t in sqlite_utils.Database(store.db.conn).tables for c in t.columns}
    assert not {c for c in columns if any(w in c for w in ("addr", "mac", "lat", "lon", "name", "location"))} - {
        "name"
    }  # credentials.name is a key name such as "ebid"
    addresses = ["3A:1F:9C:00:21:7E", "0D:AB:BF:27:4E:90", "C8:3F:26:11:02:AA"]
    agg = SightingAggregator()
    for i, address in enumerate(addresses):  # what a scanner sees alongside each advert
        ephid = os.urandom(16)
        agg.add_sighting(raw(ephid, T0 + i, -60))
        assert address not in repr(raw(ephid, T0, -60))
    store.flush(agg)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for address in addresses:
        assert address.encode() not in blob
        assert address.replace(":", "").lower().encode() not in blob
        assert bytes.fromhex(address.replace(":", "")) not in blob
        assert bytes.fromhex(address.replace(":", ""))[::-1] not in blob


def test_wipe_erases_everything(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    agg = SightingAggregator()
    agg.add_sighting(raw(os.urandom(16), T0, -60))
    store.flush(agg)
    store.put_own_key(OwnKey(SchemeName.GAEN, "tek", T0, T0 + 1, b"k" * 16, {}))
    store.wipe()
    assert list(store.windows()) == [] and store.own_keys(SchemeName.GAEN) == []


def test_window_round_trip_via_add_windows(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    w = SightingWindow(
        SchemeName.EBID, os.urandom(16), 1_780_000_020, 5, -75, -61, -340, -4, b"", 1_780_000_021.0, 1_780_000_070.0
    )
    store.add_windows([w])
    assert list(store.windows()) == [w]

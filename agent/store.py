"""The agent's only SQLite file: what it heard, its own keys, the lists it matched and what came of it.

Why it looks like this:
- The scanner calls back hundreds of times a second in a crowd; rows are per (ID, 60-s scan window), folded
  in memory by ``SightingAggregator`` and written in one UPSERT transaction per flush, so a window that
  straddles two flushes stays one row and the disk sees a few writes a second.
- Contact data is sensitive: the directory is 0700 and every file 0600 *from creation* (umask, never a
  chmod after), nothing here can hold a BLE address, a location or a name, and retention deletes
  everything older than the epidemiological window, then gives the pages back (incremental vacuum).
- WAL mode with synchronous=NORMAL: a kill -9 loses no committed transaction.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from agent.clock import DAY
from agent.paths import ensure_private_dir
from agent.schemes.base import SchemeName
from agent.sightings import SCAN_WINDOW_SECONDS, RawSighting, SightingWindow

log = logging.getLogger(__name__)

DB_FILE = "agent.db"
SCHEME_CODES = {SchemeName.DP3T: 1, SchemeName.GAEN: 2, SchemeName.EBID: 3}
SCHEMES_BY_CODE = {v: k for k, v in SCHEME_CODES.items()}

# Each step moves the schema from version i to i + 1; a database is upgraded by running the steps it lacks.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the first layout
        """CREATE TABLE sightings (
            scheme TEXT NOT NULL, id BLOB NOT NULL, window_start INTEGER NOT NULL, count INTEGER NOT NULL,
            rssi_min INTEGER NOT NULL, rssi_max INTEGER NOT NULL, rssi_sum INTEGER NOT NULL, tx_power INTEGER,
            metadata BLOB NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
            PRIMARY KEY (scheme, id, window_start))""",
        "CREATE INDEX sightings_by_window ON sightings (window_start)",
        """CREATE TABLE own_keys (
            scheme TEXT NOT NULL, kind TEXT NOT NULL, valid_from REAL NOT NULL, valid_until REAL NOT NULL,
            material BLOB NOT NULL, meta TEXT NOT NULL DEFAULT '{}')""",
        "CREATE TABLE processed_lists (sha256 TEXT PRIMARY KEY, source TEXT NOT NULL, keys INTEGER NOT NULL,"
        " processed_at REAL NOT NULL)",
        """CREATE TABLE exposures (
            day INTEGER NOT NULL, scheme TEXT NOT NULL, notify INTEGER NOT NULL, score REAL NOT NULL,
            explanation TEXT NOT NULL, computed_at REAL NOT NULL, PRIMARY KEY (day, scheme))""",
    ),
    (  # 2: compact sightings (scheme code, integer offsets, no rowid: about half the bytes), credentials
        """CREATE TABLE sightings_v2 (
            id BLOB NOT NULL, window_start INTEGER NOT NULL, scheme INTEGER NOT NULL, count INTEGER NOT NULL,
            rssi_min INTEGER NOT NULL, rssi_max INTEGER NOT NULL, rssi_sum INTEGER NOT NULL, tx_power INTEGER,
            metadata BLOB, first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
            PRIMARY KEY (id, window_start)) WITHOUT ROWID""",
        """INSERT INTO sightings_v2 SELECT id, window_start,
            CASE scheme WHEN 'dp3t' THEN 1 WHEN 'gaen' THEN 2 ELSE 3 END, count, rssi_min, rssi_max, rssi_sum,
            tx_power, metadata, CAST(first_seen - window_start AS INTEGER), CAST(last_seen - window_start AS INTEGER)
            FROM sightings""",
        "DROP TABLE sightings",
        "ALTER TABLE sightings_v2 RENAME TO sightings",
        "CREATE INDEX sightings_by_window ON sightings (window_start)",
        "CREATE TABLE credentials (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_UPSERT = """INSERT INTO sightings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id, window_start) DO UPDATE SET
        count = count + excluded.count,
        rssi_min = min(rssi_min, excluded.rssi_min),
        rssi_max = max(rssi_max, excluded.rssi_max),
        rssi_sum = rssi_sum + excluded.rssi_sum,
        tx_power = coalesce(tx_power, excluded.tx_power),
        metadata = coalesce(metadata, excluded.metadata),
        first_offset = min(first_offset, excluded.first_offset),
        last_offset = max(last_offset, excluded.last_offset)"""


class StoreError(RuntimeError):
    """The database cannot be used as it is; the message says why, and nothing was changed."""


@dataclass(frozen=True)
class OwnKey:
    scheme: SchemeName
    kind: str
    valid_from: float
    valid_until: float
    material: bytes
    meta: dict[str, object]


@dataclass(frozen=True)
class ExposureRecord:
    day: int
    scheme: SchemeName
    notify: bool
    score: float
    explanation: dict[str, object]
    computed_at: float


class SightingAggregator:
    """Folds raw sightings into per-(ID, window) aggregates in memory; O(1) per callback.

    Keyed by ID alone, with the window inside the entry: an ID's callbacks arrive in time order, so a
    callback for a new window closes the entry (it waits in ``_closed`` for the flush) — cheaper than a
    tuple key per callback. A late callback for an old window just makes a second entry, which the
    UPSERT merges.
    """

    def __init__(self, window_seconds: int = SCAN_WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self._pending: dict[bytes, list] = {}  # type: ignore[type-arg]
        self._closed: list[list] = []  # type: ignore[type-arg]

    def add(
        self, scheme: SchemeName, ephemeral_id: bytes, time: float, rssi: int, tx_power: int | None, metadata: bytes
    ) -> None:
        """One advert callback. Flat arguments, not a RawSighting: this runs for every callback, and
        building an object per callback would cost more than all the folding."""
        t = int(time)
        window = t - t % self.window_seconds
        e = self._pending.get(ephemeral_id)
        if e is None or e[8] != window:
            if e is not None:
                self._closed.append(e)
            self._pending[ephemeral_id] = [1, rssi, rssi, rssi, tx_power, metadata, t, t, window, scheme, ephemeral_id]
            return
        e[0] += 1
        if rssi < e[1]:
            e[1] = rssi
        elif rssi > e[2]:
            e[2] = rssi
        e[3] += rssi
        if t > e[7]:
            e[7] = t

    def add_sighting(self, s: RawSighting) -> None:
        self.add(s.scheme, s.ephemeral_id, s.time, s.rssi, s.tx_power, s.metadata)

    def __len__(self) -> int:
        return len(self._pending) + len(self._closed)

    def drain(self) -> list[tuple[object, ...]]:
        """Rows ready for the UPSERT, emptying the buffer."""
        entries = self._closed
        entries.extend(self._pending.values())
        self._pending, self._closed = {}, []
        return [
            (e[10], e[8], SCHEME_CODES[e[9]], e[0], e[1], e[2], e[3], e[4], e[5] or None, e[6] - e[8], e[7] - e[8])
            for e in entries
        ]


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open (creating 0700/0600 as needed) and migrate the agent's database in ``state_dir``."""
        ensure_private_dir(state_dir)
        path = state_dir / DB_FILE
        old_umask = os.umask(0o077)
        try:
            if not path.exists():
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise StoreError(
                    f"{path}: not a usable SQLite database ({exc}); move it aside to start afresh"
                ) from None
        finally:
            os.umask(old_umask)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        store = cls(sqlite_utils.Database(conn), path)
        store._migrate()
        return store

    def _migrate(self) -> None:
        conn = self.db.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this agent knows "
                f"({SCHEMA_VERSION}); upgrade proxitrace"
            )
        if version == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")  # auto_vacuum takes effect on an empty database only after a VACUUM
        for step in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={step + 1}")
            log.info("store schema migrated to version %d", step + 1)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.db.conn.close()

    # -- sightings ------------------------------------------------------------------------------------------

    def flush(self, aggregator: SightingAggregator) -> int:
        """Write everything the aggregator holds in one transaction; returns the rows written."""
        rows = aggregator.drain()
        if rows:
            with self.transaction() as conn:
                conn.executemany(_UPSERT, rows)
        return len(rows)

    def add_windows(self, windows: Iterable[SightingWindow]) -> int:
        rows = [
            (
                w.ephemeral_id,
                w.window_start,
                SCHEME_CODES[w.scheme],
                w.count,
                w.rssi_min,
                w.rssi_max,
                w.rssi_sum,
                w.tx_power,
                w.metadata or None,
                int(w.first_seen) - w.window_start,
                int(w.last_seen) - w.window_start,
            )
            for w in windows
        ]
        with self.transaction() as conn:
            conn.executemany(_UPSERT, rows)
        return len(rows)

    def windows(
        self,
        scheme: SchemeName | None = None,
        since: float = 0,
        until: float | None = None,
    ) -> Iterator[SightingWindow]:
        sql = "SELECT * FROM sightings WHERE window_start >= ?"
        args: list[object] = [int(since) - int(since) % SCAN_WINDOW_SECONDS]
        if until is not None:
            sql += " AND window_start < ?"
            args.append(int(until))
        if scheme is not None:
            sql += " AND scheme = ?"
            args.append(SCHEME_CODES[scheme])
        for row in self.db.conn.execute(sql + " ORDER BY window_start", args):
            yield _window(row)

    def windows_for_ids(self, ids: Iterable[bytes]) -> list[SightingWindow]:
        out: list[SightingWindow] = []
        wanted = list(ids)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(
                _window(r) for r in self.db.conn.execute(f"SELECT * FROM sightings WHERE id IN ({marks})", chunk)
            )
        return out

    def heard_ids(self, scheme: SchemeName, since: float) -> list[bytes]:
        """The distinct IDs of ``scheme`` heard since ``since``: what a matching index needs, without
        the (ten times more) windows."""
        rows = self.db.conn.execute(
            "SELECT DISTINCT id FROM sightings WHERE window_start >= ? AND scheme = ?",
            (int(since) - int(since) % SCAN_WINDOW_SECONDS, SCHEME_CODES[scheme]),
        )
        return [bytes(r[0]) for r in rows]

    def windows_by_id(self, ids: Iterable[bytes], scheme: SchemeName) -> dict[bytes, list[SightingWindow]]:
        """The windows of these IDs of ``scheme``, grouped by ID."""
        out: dict[bytes, list[SightingWindow]] = {}
        for w in self.windows_for_ids(ids):
            if w.scheme is scheme:
                out.setdefault(w.ephemeral_id, []).append(w)
        return out

    def sighting_counts(self, since: float) -> tuple[int, int]:
        """(sightings, distinct IDs) heard since ``since``; for status, never the IDs themselves."""
        row = self.db.conn.execute(
            "SELECT coalesce(sum(count), 0), count(DISTINCT id) FROM sightings WHERE window_start >= ?",
            (int(since) - int(since) % SCAN_WINDOW_SECONDS,),
        ).fetchone()
        return int(row[0]), int(row[1])

    # -- own keys and credentials -----------------------------------------------------------------------------

    def put_own_key(self, key: OwnKey) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO own_keys VALUES (?, ?, ?, ?, ?, ?)",
                (key.scheme.value, key.kind, key.valid_from, key.valid_until, key.material, json.dumps(key.meta)),
            )

    def replace_own_keys(self, scheme: SchemeName, kind: str, keys: Iterable[OwnKey]) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM own_keys WHERE scheme = ? AND kind = ?", (scheme.value, kind))
            conn.executemany(
                "INSERT INTO own_keys VALUES (?, ?, ?, ?, ?, ?)",
                [(k.scheme.value, k.kind, k.valid_from, k.valid_until, k.material, json.dumps(k.meta)) for k in keys],
            )

    def own_keys(self, scheme: SchemeName, kind: str | None = None) -> list[OwnKey]:
        sql, args = "SELECT * FROM own_keys WHERE scheme = ?", [scheme.value]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        return [
            OwnKey(SchemeName(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]))
            for r in self.db.conn.execute(sql + " ORDER BY valid_from", args)
        ]

    def delete_own_keys(self, scheme: SchemeName, kind: str | None = None) -> None:
        sql, args = "DELETE FROM own_keys WHERE scheme = ?", [scheme.value]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self.transaction() as conn:
            conn.execute(sql, args)

    def set_credential(self, name: str, value: dict[str, object], now: float) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO credentials VALUES (?, ?, ?)", (name, json.dumps(value), now))

    def credential(self, name: str) -> dict[str, object] | None:
        row = self.db.conn.execute("SELECT value FROM credentials WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_credential(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM credentials WHERE name = ?", (name,))

    # -- lists and exposures ----------------------------------------------------------------------------------

    def is_list_processed(self, sha256: str) -> bool:
        return self.db.conn.execute("SELECT 1 FROM processed_lists WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def record_exposures(
        self,
        records: Iterable[ExposureRecord],
        processed: tuple[str, str, int, float] | None = None,
    ) -> None:
        """Store results and (optionally) mark the list they came from, atomically: a list is never
        marked processed without its results, nor its results stored twice."""
        with self.transaction() as conn:
            for r in records:
                conn.execute(
                    """INSERT INTO exposures VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, scheme) DO UPDATE SET
                       notify = max(notify, excluded.notify), score = max(score, excluded.score),
                       explanation = CASE WHEN excluded.score >= score THEN excluded.explanation ELSE explanation END,
                       computed_at = excluded.computed_at""",
                    (r.day, r.scheme.value, int(r.notify), r.score, json.dumps(r.explanation), r.computed_at),
                )
            if processed is not None:
                conn.execute("INSERT OR IGNORE INTO processed_lists VALUES (?, ?, ?, ?)", processed)

    def exposures(self) -> list[ExposureRecord]:
        return [
            ExposureRecord(r[0], SchemeName(r[1]), bool(r[2]), r[3], json.loads(r[4]), r[5])
            for r in self.db.conn.execute("SELECT * FROM exposures ORDER BY day, scheme")
        ]

    # -- retention and erasure ----------------------------------------------------------------------------------

    def enforce_retention(self, now: float, days: int = 14) -> int:
        """Delete everything older than ``days`` days, then return the freed pages to the file system."""
        cutoff = int(now) - days * DAY
        with self.transaction() as conn:
            deleted = conn.execute("DELETE FROM sightings WHERE window_start < ?", (cutoff,)).rowcount
            conn.execute("DELETE FROM own_keys WHERE valid_until < ?", (cutoff,))
            conn.execute("DELETE FROM exposures WHERE day < ?", (cutoff // DAY,))
            conn.execute("DELETE FROM processed_lists WHERE processed_at < ?", (cutoff,))
        self.db.conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free a single page
        return deleted

    def wipe(self) -> None:
        """The user's right to erase: every row of every table, then the pages."""
        with self.transaction() as conn:
            for table in ("sightings", "own_keys", "processed_lists", "exposures", "credentials"):
                conn.execute(f"DELETE FROM {table}")
        self.db.conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free a single page
        self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(DB_FILE + "*") if p.is_file())


def _window(row: tuple) -> SightingWindow:  # type: ignore[type-arg]
    ephid, start, scheme, count, rmin, rmax, rsum, tx, meta, first, last = row
    return SightingWindow(
        SCHEMES_BY_CODE[scheme],
        ephid,
        start,
        count,
        rmin,
        rmax,
        rsum,
        tx,
        meta or b"",
        float(start + first),
        float(start + last),
    )

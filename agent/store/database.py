"""The agent's only SQLite file: what it heard, its own keys, the lists it matched and what came of it.

Why it looks like this:
- The scanner calls back hundreds of times a second in a crowd; rows are per (ID, 60-s scan window), folded
  in memory by ``SightingAggregator`` (``agent.store.aggregator``) and written here in one UPSERT transaction
  per flush, so a window that straddles two flushes stays one row and the disk sees a few writes a second.
- Contact data is sensitive: the directory is 0700 and every file 0600 *from creation* (umask, never a
  chmod after), nothing here can hold a BLE address, a location or a name, and retention deletes
  everything older than the epidemiological window, then gives the pages back (incremental vacuum).
- WAL mode with synchronous=NORMAL: a kill -9 loses no committed transaction. Weeks unattended, DB + WAL
  must stay flat once retention bites (issue 19): the WAL is cut back to ``WAL_LIMIT_BYTES`` after each
  checkpoint, and retention runs as small transactions, so the WAL never keeps the size of one big one.
- Weeks unattended: a disk that fills or turns read-only must not lose what is being heard, so a failed
  flush keeps its windows in memory (folded, up to ``MAX_UNWRITTEN_WINDOWS``) and the next flush retries;
  a directory that cannot hold an SQLite database at all (read-only, no POSIX locks or no shared-memory
  mapping for the WAL, as on some 9p and network mounts) is refused at open with one line naming the path
  and the cause (``StoreUnusable``), leaving nothing behind; and the daemon may ask for a database that fails
  its integrity check to be moved aside rather than refused, so a corrupt file stops nobody's tracing. How
  those faults are told apart lives in ``agent.store.faults``; the layout in ``agent.store.schema``.
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

from agent.clock import DAY
from agent.paths import ensure_private_dir
from agent.schemes.base import SchemeName
from agent.sightings import SCAN_WINDOW_SECONDS, SightingWindow
from agent.store import aggregator as aggregation
from agent.store.aggregator import SightingAggregator, hold_rows
from agent.store.faults import (
    Corrupt,
    StoreError,
    StoreUnusable,
    foreign_lock,
    integrity_problem,
    move_aside,
    remove_database,
    write_failure_cause,
)
from agent.store.schema import DB_FILE, MIGRATIONS, SCHEMA_VERSION, SCHEME_CODES, SCHEMES_BY_CODE, UPSERT

# What the WAL file is cut back to when a checkpoint has emptied it (SQLite's journal_size_limit): the
# 1000 pages of 4 KiB after which SQLite checkpoints by itself, so a WAL at rest holds at most one
# checkpoint's worth and the file no longer keeps the size of the biggest transaction it ever held.
WAL_LIMIT_BYTES = 4 * 1024 * 1024
# Retention deletes an hour of windows per transaction and vacuums this many pages per transaction: each is
# a small fraction of the 1000-page checkpoint, so no single transaction swells the WAL.
RETENTION_SLICE_SECONDS = 3600
VACUUM_SLICE_PAGES = 256
INCREMENTAL_VACUUM = 2  # what PRAGMA auto_vacuum reads back for INCREMENTAL
log = logging.getLogger("agent.store")  # the store's one logger name, whichever module of it speaks


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


@dataclass(frozen=True)
class Connection:
    """The store's one SQLite connection (``Store.db.conn``). Plain ``sqlite3``: the sqlite-utils wrapper
    it replaced was only ever used for ``.conn``, and importing it imports numpy, 15 MiB of a daemon's
    RSS that a device with no list to match never needs (issue 17)."""

    conn: sqlite3.Connection


class Store:
    def __init__(self, db: Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.moved_aside: Path | None = None  # where a corrupt database found at open went
        self.write_error: str | None = None  # why the last flush failed; None while writes succeed
        self.unwritten_dropped = 0  # windows lost because the store was unwritable and memory full
        self._unwritten: dict[tuple[bytes, int], list[object]] = {}

    @classmethod
    def open(cls, state_dir: Path, *, move_aside_corrupt: bool = False) -> Store:
        """Open (creating 0700/0600 as needed) and migrate the agent's database in ``state_dir``.

        Raises StoreUnusable when the directory cannot hold a database (nothing is left behind), StoreError
        when the file is unusable; with ``move_aside_corrupt`` a file that is not a database or fails its
        integrity check is renamed ``agent.db.corrupt-<time>`` and a fresh store starts (``moved_aside``)."""
        path = state_dir / DB_FILE
        try:
            ensure_private_dir(state_dir)
        except OSError as exc:
            cause = write_failure_cause(exc)
            raise StoreUnusable(f"{state_dir}: cannot create the state directory ({cause})") from None
        created = not path.exists()
        try:
            store = cls._open(path, created, check_integrity=move_aside_corrupt)
        except Corrupt as exc:
            store = cls._open(path, True)
            store.moved_aside = exc.aside
            return store
        except sqlite3.DatabaseError as exc:
            if created:
                remove_database(path)
            name = getattr(exc, "sqlite_errorname", "")
            held = foreign_lock(path)
            if held is not None:  # not the mount's fault, and no restart helps while that process holds it
                raise StoreUnusable(f"{path}: cannot use the database here ({held})") from None
            if name.startswith("SQLITE_BUSY"):
                raise StoreError(f"{path}: {write_failure_cause(exc)}") from None
            if name not in ("SQLITE_NOTADB", "SQLITE_CORRUPT") and isinstance(exc, sqlite3.OperationalError):
                cause = write_failure_cause(exc, state_dir)
                raise StoreUnusable(f"{path}: cannot use the database here ({cause})") from None
            if not move_aside_corrupt:
                raise StoreError(
                    f"{path}: not a usable SQLite database ({exc}); move it aside to start afresh"
                ) from None
            aside = move_aside(path, f"not a usable SQLite database ({exc})")
            store = cls._open(path, True)
            store.moved_aside = aside
            return store
        except OSError as exc:
            if created:
                remove_database(path)
            raise StoreUnusable(f"{path}: cannot create the database ({write_failure_cause(exc)})") from None
        return store

    @classmethod
    def _open(cls, path: Path, create: bool, check_integrity: bool = False) -> Store:
        old_umask = os.umask(0o077)
        try:
            if create:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
                conn.execute("PRAGMA foreign_keys=ON")
                store = cls(Connection(conn), path)
                problem = integrity_problem(conn) if check_integrity and not create else None
                if problem is not None:  # before anything writes to it: the file is kept as it was found
                    conn.close()
                    raise Corrupt(move_aside(path, problem))
                store._migrate()
                with store.transaction():  # prove we can lock and write here now, not at the first flush
                    conn.execute("PRAGMA user_version=" + str(SCHEMA_VERSION))
            except BaseException:
                conn.close()
                raise
        finally:
            os.umask(old_umask)
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
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL_VACUUM:
            # A new file, or one made without it (by hand, by another tool): retention could never give
            # pages back. The mode takes effect only through a VACUUM, which rewrites the file once.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
            if version:
                log.info("store: %s rewritten once so that retention gives its pages back", self.path)
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
            if conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self.db.conn.close()

    # -- sightings ------------------------------------------------------------------------------------------

    def flush(self, aggregator: SightingAggregator) -> int:
        """Write everything the aggregator holds, and anything an earlier failed flush kept, in one
        transaction; returns the rows written. When the write fails (disk full, read-only, I/O error) the
        rows are kept in memory, folded per (ID, window), up to ``MAX_UNWRITTEN_WINDOWS``: nothing raises,
        ``write_error`` says why, and the next flush tries again."""
        rows = aggregator.drain()
        if self._unwritten:
            self._hold(rows)
            rows = [(k[0], k[1], *v) for k, v in self._unwritten.items()]
        if not rows:
            return 0
        try:
            with self.transaction() as conn:
                conn.executemany(UPSERT, rows)
        except sqlite3.OperationalError as exc:
            cause = write_failure_cause(exc, self.path.parent)
            if self.write_error is None:
                log.error(
                    "store: cannot write sightings (%s); keeping up to %d windows in memory until it can",
                    cause,
                    aggregation.MAX_UNWRITTEN_WINDOWS,
                )
            self.write_error = cause
            if not self._unwritten:
                self._hold(rows)
            return 0
        if self.write_error is not None:
            log.warning("store: writing again; %d windows kept in memory are now stored", len(rows))
            self.write_error = None
        self._unwritten = {}
        return len(rows)

    @property
    def unwritten_windows(self) -> int:
        return len(self._unwritten)

    def _hold(self, rows: Iterable[tuple[object, ...]]) -> None:
        self.unwritten_dropped += hold_rows(self._unwritten, rows)

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
            conn.executemany(UPSERT, rows)
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
        the (ten times more) windows.

        Read on a read-only connection of its own, because the daemon's sync calls it from its matching
        thread while the loop keeps flushing: on the shared connection this read would run inside the
        loop's transactions and a rollback there would abort it. WAL lets it read beside the writer."""
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            rows = reader.execute(
                "SELECT DISTINCT id FROM sightings WHERE window_start >= ? AND scheme = ?",
                (int(since) - int(since) % SCAN_WINDOW_SECONDS, SCHEME_CODES[scheme]),
            )
            return [bytes(r[0]) for r in rows]
        finally:
            reader.close()

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
        """Delete everything older than ``days`` days, then give the freed pages back; the windows deleted."""
        return sum(self.retention_steps(now, days))

    def retention_steps(self, now: float, days: int = 14) -> Iterator[int]:
        """``enforce_retention`` one transaction at a time, for a caller (the daemon's loop) that lets other
        work run between them; yields the windows each step deleted, and no transaction is open at a yield.

        Why in slices: one transaction for a day's rows rewrites about half the file (measured: a day of four
        wrote 1200 of 2476 pages, the vacuum after it 471 more: the ID-ordered table's leaves that held the
        day's IDs, the siblings rebalanced with them, the index's range), and the WAL file kept that size.
        An hour of windows (``RETENTION_SLICE_SECONDS``) and ``VACUUM_SLICE_PAGES`` pages per transaction
        keep each small, so the automatic checkpoint runs between them and the WAL stays near
        ``WAL_LIMIT_BYTES``. A crash between slices leaves old rows that the next run deletes."""
        cutoff = int(now) - days * DAY
        conn = self.db.conn
        with self.transaction():
            conn.execute("DELETE FROM own_keys WHERE valid_until < ?", (cutoff,))
            conn.execute("DELETE FROM exposures WHERE day < ?", (cutoff // DAY,))
            conn.execute("DELETE FROM processed_lists WHERE processed_at < ?", (cutoff,))
        yield 0
        while (oldest := conn.execute("SELECT min(window_start) FROM sightings").fetchone()[0]) is not None:
            if oldest >= cutoff:
                break
            with self.transaction():
                edge = min(oldest + RETENTION_SLICE_SECONDS, cutoff)
                deleted = conn.execute("DELETE FROM sightings WHERE window_start < ?", (edge,)).rowcount
            yield deleted
        yield from self._give_pages_back()

    def _give_pages_back(self) -> Iterator[int]:
        """Return the free pages to the file system, a slice per transaction (see ``retention_steps``)."""
        conn = self.db.conn
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        while free > 0:
            conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_SLICE_PAGES});")  # execute() frees one page
            left = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if left >= free:  # no progress (not in incremental mode after all): never loop on it
                return
            free = left
            yield 0

    def wipe(self) -> None:
        """The user's right to erase: every row of every table, then the pages."""
        with self.transaction() as conn:
            for table in ("sightings", "own_keys", "processed_lists", "exposures", "credentials"):
                conn.execute(f"DELETE FROM {table}")
        for _ in self._give_pages_back():
            pass
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

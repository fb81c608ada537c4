"""The agent's only SQLite file: what it heard, its own keys, the lists it matched and what came of it.

Why it looks like this:
- The scanner calls back hundreds of times a second in a crowd; rows are per (ID, 60-s scan window), folded
  in memory by ``SightingAggregator`` and written in one UPSERT transaction per flush, so a window that
  straddles two flushes stays one row and the disk sees a few writes a second.
- Contact data is sensitive: the directory is 0700 and every file 0600 *from creation* (umask, never a
  chmod after), nothing here can hold a BLE address, a location or a name, and retention deletes
  everything older than the epidemiological window, then gives the pages back (incremental vacuum).
- WAL mode with synchronous=NORMAL: a kill -9 loses no committed transaction.
- Weeks unattended: a disk that fills or turns read-only must not lose what is being heard, so a failed
  flush keeps its windows in memory (folded, up to ``MAX_UNWRITTEN_WINDOWS``) and the next flush retries;
  a directory that cannot hold an SQLite database at all (read-only, no POSIX locks or no shared-memory
  mapping for the WAL, as on some 9p and network mounts) is refused at open with one line naming the path
  and the cause (``StoreUnusable``), leaving nothing behind; and the daemon may ask for a database that fails
  its integrity check to be moved aside rather than refused, so a corrupt file stops nobody's tracing.
- A neighbour spraying fresh fake IDs must not fill the disk: the aggregator admits at most
  ``FloodCap.rows_per_minute`` new IDs per scheme and minute (the first ones, then those that prove
  themselves by being heard twice), and counts what it drops.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import sqlite3
import time
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


# A failed flush keeps this many (ID, window) rows in memory, folded; about 300 bytes each, so ~15 MB at the
# bound: 16 h of 50 peers heard all the time. Beyond it new windows are dropped and counted.
MAX_UNWRITTEN_WINDOWS = 50_000
CORRUPT_SUFFIX = ".corrupt-"


class StoreError(RuntimeError):
    """The database cannot be used as it is; the message says why, and nothing was changed."""


class _Corrupt(Exception):
    """Internal: the database failed its integrity check and was moved to ``aside``."""

    def __init__(self, aside: Path) -> None:
        self.aside = aside


class StoreUnusable(StoreError):
    """The state directory cannot hold an SQLite database at all (read-only, no locks, no WAL shared memory).
    Retrying cannot help until someone fixes the mount, so the daemon exits with EX_CONFIG."""


def write_failure_cause(exc: BaseException, where: Path | None = None) -> str:
    """Why SQLite (or the OS under it) could not write, in words an operator can act on. SQLite reports a
    file system turned read-only under it (an SD card failing) as a plain write I/O error, and the mount
    flags may still say rw, so ``where`` is asked by creating a file in it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if where is not None and (name.startswith("SQLITE_IOERR") or name.startswith("SQLITE_READONLY")):
        probe = where / f".write-probe-{os.getpid()}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except FileExistsError:
            pass
        except OSError as probed:
            return write_failure_cause(probed)
    if isinstance(exc, OSError):
        return {
            errno.EROFS: "read-only file system",
            errno.ENOSPC: "disk full",
            errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
        }.get(exc.errno or 0, os.strerror(exc.errno or 0) if exc.errno else str(exc))
    if name == "SQLITE_FULL":
        return "disk full"
    if name.startswith("SQLITE_READONLY"):
        return "read-only file system or database"
    if name.startswith("SQLITE_IOERR") and name.endswith("LOCK"):
        return "the file system cannot lock files (a 9p or network mount?)"
    if name.startswith("SQLITE_IOERR_SHM") or name == "SQLITE_PROTOCOL":
        return "the file system cannot map the WAL's shared memory (a 9p or network mount?)"
    if name.startswith("SQLITE_BUSY"):
        return "locked by another process (is another agent running on this state directory?)"
    if name.startswith("SQLITE_CANTOPEN"):
        return "cannot open the database file"
    if name.startswith("SQLITE_IOERR"):
        return f"disk I/O error ({name})"
    return f"{name or type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class FloodCap:
    """How many new IDs per scheme and scan window reach the store.

    A real crowd is far below ``new_per_minute`` (a packed carriage is a few hundred phones, each with one
    ID for 10-20 min); a neighbour spraying fresh IDs is far above. IDs admitted in the previous window
    always pass, so peers in range keep their rows through a flood. Past the cap a new ID passes only when
    heard a second time while it waits among ``new_per_minute`` candidates (random eviction), at most
    ``proven_per_minute`` of them: a real phone repeats its ID every few hundred ms, a sprayed ID is never
    heard again, so a peer whose ID rotates mid-flood still gets in. A window thus holds at most
    ``new_per_minute + proven_per_minute`` new rows per scheme; every callback refused is counted."""

    new_per_minute: int = 1_000
    proven_per_minute: int = 250

    @property
    def rows_per_minute(self) -> int:
        return self.new_per_minute + self.proven_per_minute


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
    UPSERT merges. New IDs are admitted under ``FloodCap``; ``flood_dropped`` counts the callbacks refused.
    """

    def __init__(
        self, window_seconds: int = SCAN_WINDOW_SECONDS, cap: FloodCap = FloodCap(), seed: int | None = None
    ) -> None:
        self.window_seconds = window_seconds
        self.cap = cap
        self._pending: dict[bytes, list] = {}  # type: ignore[type-arg]
        self._closed: list[list] = []  # type: ignore[type-arg]
        self._window = -1
        self._current: set[bytes] = set()  # IDs admitted in the current window (survives a drain)
        self._known: set[bytes] = set()  # IDs admitted in the previous window: always admitted again
        self._admitted: dict[SchemeName, int] = {}
        self._promoted: dict[SchemeName, int] = {}
        self._candidates: list[bytes] = []  # new IDs past the cap, waiting to be heard again
        self._waiting: set[bytes] = set()
        self._rng = random.Random(seed)
        self.flood_dropped = 0

    def add(
        self, scheme: SchemeName, ephemeral_id: bytes, time: float, rssi: int, tx_power: int | None, metadata: bytes
    ) -> None:
        """One advert callback. Flat arguments, not a RawSighting: this runs for every callback, and
        building an object per callback would cost more than all the folding."""
        t = int(time)
        window = t - t % self.window_seconds
        e = self._pending.get(ephemeral_id)
        if e is None or e[8] != window:
            if window > self._window:
                self._new_window(window)
            if ephemeral_id not in self._current:
                if ephemeral_id not in self._known and not self._admit(scheme, ephemeral_id):
                    self.flood_dropped += 1
                    return
                self._current.add(ephemeral_id)
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

    def _new_window(self, window: int) -> None:
        """The first callback of a later window: this window's IDs become the known ones."""
        self._known, self._current = self._current, set()
        self._window = window
        self._admitted.clear()
        self._promoted.clear()
        self._candidates.clear()
        self._waiting.clear()

    def _admit(self, scheme: SchemeName, ephemeral_id: bytes) -> bool:
        limit = self.cap.new_per_minute
        admitted = self._admitted.get(scheme, 0)
        if admitted < limit:
            self._admitted[scheme] = admitted + 1
            return True
        if ephemeral_id in self._waiting:
            promoted = self._promoted.get(scheme, 0)
            if promoted >= self.cap.proven_per_minute:
                return False
            self._waiting.discard(ephemeral_id)
            self._promoted[scheme] = promoted + 1
            return True
        if len(self._candidates) < limit:
            self._candidates.append(ephemeral_id)
        else:  # O(1) random eviction; an entry already promoted may be evicted harmlessly
            i = self._rng.randrange(limit)
            self._waiting.discard(self._candidates[i])
            self._candidates[i] = ephemeral_id
        self._waiting.add(ephemeral_id)
        return False

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
        except _Corrupt as exc:
            store = cls._open(path, True)
            store.moved_aside = exc.aside
            return store
        except sqlite3.DatabaseError as exc:
            if created:
                _remove_database(path)
            name = getattr(exc, "sqlite_errorname", "")
            if name.startswith("SQLITE_BUSY"):
                raise StoreError(f"{path}: {write_failure_cause(exc)}") from None
            if name not in ("SQLITE_NOTADB", "SQLITE_CORRUPT") and isinstance(exc, sqlite3.OperationalError):
                cause = write_failure_cause(exc, state_dir)
                raise StoreUnusable(f"{path}: cannot use the database here ({cause})") from None
            if not move_aside_corrupt:
                raise StoreError(
                    f"{path}: not a usable SQLite database ({exc}); move it aside to start afresh"
                ) from None
            aside = _move_aside(path, f"not a usable SQLite database ({exc})")
            store = cls._open(path, True)
            store.moved_aside = aside
            return store
        except OSError as exc:
            if created:
                _remove_database(path)
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
                conn.execute("PRAGMA foreign_keys=ON")
                store = cls(sqlite_utils.Database(conn), path)
                problem = store._integrity_problem() if check_integrity and not create else None
                if problem is not None:  # before anything writes to it: the file is kept as it was found
                    conn.close()
                    raise _Corrupt(_move_aside(path, problem))
                store._migrate()
                with store.transaction():  # prove we can lock and write here now, not at the first flush
                    conn.execute("PRAGMA user_version=" + str(SCHEMA_VERSION))
            except BaseException:
                conn.close()
                raise
        finally:
            os.umask(old_umask)
        return store

    def _integrity_problem(self) -> str | None:
        """``PRAGMA quick_check`` (the b-tree structure, not the slow index cross-check): None when sound."""
        try:
            rows = self.db.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return f"integrity check failed ({exc})"
        if rows == [("ok",)]:
            return None
        first = " ".join(str(rows[0][0]).split())[:160]
        return f"integrity check failed ({len(rows)} problem(s): {first})"

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
                conn.executemany(_UPSERT, rows)
        except sqlite3.OperationalError as exc:
            cause = write_failure_cause(exc, self.path.parent)
            if self.write_error is None:
                log.error(
                    "store: cannot write sightings (%s); keeping up to %d windows in memory until it can",
                    cause,
                    MAX_UNWRITTEN_WINDOWS,
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
        """Fold rows into the in-memory backlog as the UPSERT would; new windows past the bound are dropped."""
        held = self._unwritten
        for row in rows:
            key = (row[0], row[1])
            old = held.get(key)
            if old is None:
                if len(held) >= MAX_UNWRITTEN_WINDOWS:
                    self.unwritten_dropped += 1
                    continue
                held[key] = list(row[2:])
                continue
            _, count, rmin, rmax, rsum, tx, meta, first, last = row[2:]
            old[1] = old[1] + count  # type: ignore[operator]
            old[2] = min(old[2], rmin)  # type: ignore[type-var]
            old[3] = max(old[3], rmax)  # type: ignore[type-var]
            old[4] = old[4] + rsum  # type: ignore[operator]
            old[5] = old[5] if old[5] is not None else tx
            old[6] = old[6] if old[6] is not None else meta
            old[7] = min(old[7], first)  # type: ignore[type-var]
            old[8] = max(old[8], last)  # type: ignore[type-var]

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


def _remove_database(path: Path) -> None:
    """Undo a database this open created, so a refused start leaves nothing half-written."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a read-only directory: the create failed too, so nothing is there
            log.debug("cannot remove %s: %s", p.name, exc)


def _move_aside(path: Path, problem: str) -> Path:
    """Rename a corrupt database (with its WAL) out of the way: kept for a post-mortem, never deleted."""
    aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{int(time.time())}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    os.replace(path, aside)
    log.error("store: %s: %s; moved it aside to %s and started an empty store", path, problem, aside.name)
    return aside


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

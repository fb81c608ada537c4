"""The backend's own SQLite store: the only module that writes SQL.

The server's promises rest on this file, so each is a single statement or transaction: a TAN, upload
token, enrolment code or challenge is spent with ``UPDATE … WHERE used IS NULL`` (two racing requests
cannot both win), and a request that fails validation writes nothing. The store keeps no IP address, no
TAN or token in clear (SHA-256 only), and no EBID: a report is kept as the PUID's exposure rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.clock import day_of
from agent.paths import ensure_private_dir
from agent.protocol import wire
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey

DB_FILE = "backend.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tans (
    hash BLOB PRIMARY KEY, expires REAL NOT NULL, onset_day INTEGER, used REAL);
CREATE TABLE IF NOT EXISTS upload_tokens (
    hash BLOB PRIMARY KEY, expires REAL NOT NULL, onset_day INTEGER, fake INTEGER NOT NULL, used REAL);
CREATE TABLE IF NOT EXISTS published_keys (
    scheme TEXT NOT NULL, key_data BLOB NOT NULL, rolling_start INTEGER NOT NULL,
    rolling_period INTEGER NOT NULL, risk_level INTEGER NOT NULL, report_type INTEGER NOT NULL,
    days_since_onset INTEGER, tag_ms INTEGER NOT NULL, PRIMARY KEY (scheme, key_data));
CREATE INDEX IF NOT EXISTS published_keys_tag ON published_keys (scheme, tag_ms);
CREATE TABLE IF NOT EXISTS enrolment_codes (hash BLOB PRIMARY KEY, expires REAL NOT NULL, used REAL);
CREATE TABLE IF NOT EXISTS challenges (challenge BLOB PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
    id INTEGER PRIMARY KEY, client_id TEXT UNIQUE NOT NULL, secret_hash BLOB NOT NULL,
    puid BLOB UNIQUE NOT NULL, created REAL NOT NULL, poll_day INTEGER NOT NULL DEFAULT -1,
    polls INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS access_tokens (
    hash BLOB PRIMARY KEY,
    registration_id INTEGER NOT NULL REFERENCES registrations(id) ON DELETE CASCADE,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS broadcast_keys (period INTEGER PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS exposures (
    registration_id INTEGER NOT NULL REFERENCES registrations(id) ON DELETE CASCADE, source TEXT NOT NULL,
    period INTEGER NOT NULL, time REAL NOT NULL, scans TEXT NOT NULL, reported REAL NOT NULL);
CREATE INDEX IF NOT EXISTS exposures_registration ON exposures (registration_id);
CREATE TABLE IF NOT EXISTS federation_seen (id TEXT PRIMARY KEY, received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, country_code INTEGER NOT NULL, body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, next_attempt REAL NOT NULL);
"""
# Each step brings the store from its position's version to the next (step 0: version 1 -> 2). A step
# only adds tables or columns, so a store that a newer step has not touched yet keeps all its data.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 2: the health authority's portal (agent/server/portal). Issued TANs point at the TAN's hash only;
    # nothing links an issued TAN, an officer or an audit entry to an upload token or an upload.
    (
        """CREATE TABLE officers (
            id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL, totp_secret TEXT,
            disabled INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
            locked_until REAL NOT NULL DEFAULT 0, totp_last_step INTEGER NOT NULL DEFAULT -1,
            created REAL NOT NULL)""",
        """CREATE TABLE officer_sessions (
            hash BLOB PRIMARY KEY, officer_id INTEGER NOT NULL REFERENCES officers(id) ON DELETE CASCADE,
            expires REAL NOT NULL)""",
        """CREATE TABLE api_tokens (
            hash BLOB PRIMARY KEY, officer_id INTEGER NOT NULL REFERENCES officers(id) ON DELETE CASCADE,
            created REAL NOT NULL)""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            detail TEXT NOT NULL)""",
        """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
        """CREATE TABLE issued_tans (
            id INTEGER PRIMARY KEY, tan_hash BLOB UNIQUE NOT NULL, officer TEXT NOT NULL, issued_hour REAL NOT NULL,
            expires REAL NOT NULL, report_type TEXT NOT NULL, note TEXT NOT NULL, state TEXT)""",
        "CREATE TABLE daily_counts (day INTEGER NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (day, name))",
    ),
    # 3: EBID devices declare their TX power at registration (the advert no longer carries it), and a
    # registration keeps only the UTC day it was last seen, so silent ones can be purged.
    (
        "ALTER TABLE registrations ADD COLUMN tx_power INTEGER",
        "ALTER TABLE registrations ADD COLUMN seen_day INTEGER NOT NULL DEFAULT -1",
    ),
)
SCHEMA_VERSION = 1 + len(_MIGRATIONS)


class _Rollback(Exception):
    """Raised inside a transaction to undo it."""


class Spent(StrEnum):
    """Why a one-time code or token was refused."""

    UNKNOWN = "unknown"
    USED = "already used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class UploadToken:
    onset_day: int | None
    fake: bool


@dataclass(frozen=True)
class Registration:
    id: int
    client_id: str
    secret_hash: bytes
    puid: bytes
    tx_power: int | None = None


@dataclass(frozen=True)
class Exposure:
    """A contact of a registered device, reported by someone diagnosed (here or via federation).
    ``source`` is a random id per report: the rows of one report are one person, as a key is in GAEN."""

    source: str
    period: int
    time: float
    scans: tuple[wire.ScanRecord, ...]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    country_code: int
    body: bytes
    attempts: int


class ServerStore:
    """One connection, used from the event loop's thread (and by the CLI from its own process: WAL and a
    busy timeout let both write)."""

    def __init__(self, path: Path) -> None:
        ensure_private_dir(path.parent)
        fresh = not path.exists()
        if fresh:
            path.touch(mode=0o600)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: store schema {version} is newer than this backend ({SCHEMA_VERSION})")
        with self._tx() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            for step in _MIGRATIONS[max(version, 1) - 1 :]:
                for statement in step:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return row

    # ---- meta ----------------------------------------------------------------------------------------

    def meta(self, name: str) -> bytes | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else bytes(row[0])

    def meta_setdefault(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless a value is there; return what is stored."""
        self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name, value))
        return bytes(self._one("SELECT value FROM meta WHERE name = ?", (name,))[0])

    # ---- daily counts (the dashboard's and /metrics' aggregates) ------------------------------------

    def count(self, name: str, now: float, n: int = 1) -> None:
        """Add ``n`` to today's count of ``name`` (a number per UTC day, never a row per person)."""
        self._count(self._db, name, now, n)

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, now: float, n: int = 1) -> None:
        db.execute(
            "INSERT INTO daily_counts VALUES (?, ?, ?) ON CONFLICT (day, name) DO UPDATE SET count = count + ?",
            (int(now // 86_400), name, n, n),
        )

    def daily_counts(self, first_day: int) -> dict[tuple[int, str], int]:
        rows = self._db.execute("SELECT day, name, count FROM daily_counts WHERE day >= ?", (first_day,))
        return {(day, name): count for day, name, count in rows}

    def count_totals(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, SUM(count) FROM daily_counts GROUP BY name")
        return {name: total for name, total in rows}

    # ---- TANs and upload tokens ----------------------------------------------------------------------

    def add_tan(self, code_hash: bytes, expires: float, onset_day: int | None) -> None:
        self._db.execute(
            "INSERT INTO tans (hash, expires, onset_day) VALUES (?, ?, ?)", (code_hash, expires, onset_day)
        )

    def redeem_tan(
        self, code_hash: bytes, now: float, token_hash: bytes, token_expires: float
    ) -> tuple[int | None, Spent | None]:
        """Spend the TAN and create its upload token in one transaction: (onset day, None) on success,
        else (None, why)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tans SET used = ? WHERE hash = ? AND used IS NULL AND expires > ?", (now, code_hash, now)
            )
            row = db.execute("SELECT onset_day, used, expires FROM tans WHERE hash = ?", (code_hash,)).fetchone()
            if cur.rowcount != 1:
                if row is None:
                    return None, Spent.UNKNOWN
                return None, (Spent.USED if row[1] is not None else Spent.EXPIRED)
            db.execute(
                "INSERT INTO upload_tokens (hash, expires, onset_day, fake) VALUES (?, ?, ?, 0)",
                (token_hash, token_expires, row[0]),
            )
            self._count(db, "tans_used", now)
            return row[0], None

    def revoke_tan(self, code_hash: bytes, now: float) -> bool:
        """Delete an open TAN so it can no longer be redeemed; False when it is used, expired or gone."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM tans WHERE hash = ? AND used IS NULL AND expires > ?", (code_hash, now))
            if cur.rowcount != 1:
                return False
            self._count(db, "tans_revoked", now)
            return True

    def expired_tans_by_day(self, now: float) -> dict[int, int]:
        """TANs that expired unused and are still stored, by the UTC day they expired (retention counts
        the older ones into ``daily_counts`` as it deletes them)."""
        rows = self._db.execute(
            "SELECT CAST(expires / 86400 AS INTEGER), COUNT(*) FROM tans WHERE used IS NULL AND expires <= ? "
            "GROUP BY 1",
            (now,),
        )
        return dict(rows.fetchall())

    def outbox_state(self) -> tuple[int, int]:
        """Forwards waiting in the federation outbox, and how many of them have failed at least once."""
        row = self._one("SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0) FROM outbox")
        return row[0], row[1]

    def keys_by_day(self, scheme: SchemeName) -> dict[int, int]:
        """Stored keys per UTC day of their release (tag)."""
        rows = self._db.execute(
            "SELECT tag_ms / 86400000, COUNT(*) FROM published_keys WHERE scheme = ? GROUP BY 1", (scheme.value,)
        )
        return dict(rows.fetchall())

    def tan_states(self, now: float) -> dict[bytes, str]:
        """Each stored TAN's state: open, used or expired."""
        rows = self._db.execute("SELECT hash, used, expires FROM tans")
        return {
            bytes(h): "used" if used is not None else ("expired" if expires <= now else "open")
            for h, used, expires in rows
        }

    def upload_token(self, token_hash: bytes, now: float) -> UploadToken | Spent:
        row = self._one("SELECT onset_day, fake, used, expires FROM upload_tokens WHERE hash = ?", (token_hash,))
        if row is None:
            return Spent.UNKNOWN
        if row[2] is not None:
            return Spent.USED
        if row[3] <= now:
            return Spent.EXPIRED
        return UploadToken(row[0], bool(row[1]))

    def _spend_upload_token(self, db: sqlite3.Connection, token_hash: bytes, now: float) -> bool:
        """Spend the token; a real one (not dummy traffic) counts as one upload today."""
        cur = db.execute(
            "UPDATE upload_tokens SET used = ? WHERE hash = ? AND used IS NULL AND expires > ? RETURNING fake",
            (now, token_hash, now),
        )
        spent = cur.fetchall()
        if spent and not spent[0][0]:
            self._count(db, "uploads", now)
        return bool(spent)

    # ---- published keys ------------------------------------------------------------------------------

    def publish_keys(
        self, token_hash: bytes, now: float, scheme: SchemeName, keys: Sequence[tuple[PublishedKey, int]]
    ) -> bool:
        """Spend the upload token and store (key, release tag ms) pairs atomically; False if the token
        was spent meanwhile. A key already stored (a retried upload) is kept once."""
        with self._tx() as db:
            if not self._spend_upload_token(db, token_hash, now):
                return False
            db.executemany(
                "INSERT OR IGNORE INTO published_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        scheme.value,
                        k.key_data,
                        k.rolling_start_interval_number,
                        k.rolling_period,
                        k.transmission_risk_level,
                        k.report_type,
                        k.days_since_onset,
                        tag,
                    )
                    for k, tag in keys
                ],
            )
            return True

    def released_keys(self, scheme: SchemeName, after_tag: int, upto_tag: int) -> list[PublishedKey]:
        rows = self._db.execute(
            "SELECT key_data, rolling_start, rolling_period, risk_level, report_type, days_since_onset "
            "FROM published_keys WHERE scheme = ? AND tag_ms > ? AND tag_ms <= ? ORDER BY tag_ms, key_data",
            (scheme.value, after_tag, upto_tag),
        ).fetchall()
        return [PublishedKey(bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def release_tags(self, scheme: SchemeName, after_tag: int, upto_tag: int) -> list[int]:
        rows = self._db.execute(
            "SELECT DISTINCT tag_ms FROM published_keys WHERE scheme = ? AND tag_ms > ? AND tag_ms <= ? "
            "ORDER BY tag_ms",
            (scheme.value, after_tag, upto_tag),
        ).fetchall()
        return [r[0] for r in rows]

    def count_keys(self, scheme: SchemeName) -> int:
        return self._one("SELECT COUNT(*) FROM published_keys WHERE scheme = ?", (scheme.value,))[0]

    # ---- EBID: enrolment, challenges, registrations, tokens ------------------------------------------

    def add_enrolment_codes(self, hashes: Iterable[bytes], expires: float) -> None:
        self._db.executemany(
            "INSERT INTO enrolment_codes (hash, expires) VALUES (?, ?)", [(h, expires) for h in hashes]
        )

    def enrolment_code(self, code_hash: bytes, now: float) -> Spent | None:
        """None when the code can be used."""
        row = self._one("SELECT used, expires FROM enrolment_codes WHERE hash = ?", (code_hash,))
        if row is None:
            return Spent.UNKNOWN
        if row[0] is not None:
            return Spent.USED
        return Spent.EXPIRED if row[1] <= now else None

    def add_challenge(self, challenge: bytes, expires: float, now: float, limit: int) -> bool:
        """Keep a new challenge unless ``limit`` unexpired ones are open (expired ones are dropped first)."""
        with self._tx() as db:
            db.execute("DELETE FROM challenges WHERE expires <= ?", (now,))
            if db.execute("SELECT COUNT(*) FROM challenges").fetchone()[0] >= limit:
                return False
            db.execute("INSERT INTO challenges VALUES (?, ?)", (challenge, expires))
        return True

    def challenge_valid(self, challenge: bytes, now: float) -> bool:
        return self._one("SELECT 1 FROM challenges WHERE challenge = ? AND expires > ?", (challenge, now)) is not None

    def register(
        self,
        challenge: bytes,
        code_hash: bytes,
        now: float,
        client_id: str,
        secret_hash: bytes,
        puid: bytes,
        tx_power: int | None = None,
    ) -> bool:
        """Spend the challenge and the enrolment code and create the registration, all or nothing."""
        try:
            with self._tx() as db:
                cur = db.execute("DELETE FROM challenges WHERE challenge = ? AND expires > ?", (challenge, now))
                if cur.rowcount != 1:
                    raise _Rollback
                cur = db.execute(
                    "UPDATE enrolment_codes SET used = ? WHERE hash = ? AND used IS NULL AND expires > ?",
                    (now, code_hash, now),
                )
                if cur.rowcount != 1:
                    raise _Rollback
                db.execute(
                    "INSERT INTO registrations (client_id, secret_hash, puid, created, tx_power, seen_day)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (client_id, secret_hash, puid, now, tx_power, day_of(now)),
                )
                self._count(db, "ebid_registrations", now)
        except _Rollback:
            return False
        return True

    def registration_by_client(self, client_id: str) -> Registration | None:
        row = self._one("SELECT id, client_id, secret_hash, puid FROM registrations WHERE client_id = ?", (client_id,))
        return None if row is None else Registration(row[0], row[1], bytes(row[2]), bytes(row[3]))

    def registrations_by_puid(self, puids: Iterable[bytes]) -> dict[bytes, int]:
        wanted = list(set(puids))
        out: dict[bytes, int] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for puid, rid in self._db.execute(f"SELECT puid, id FROM registrations WHERE puid IN ({marks})", chunk):
                out[bytes(puid)] = rid
        return out

    def registration(self, registration_id: int) -> Registration | None:
        row = self._one(
            "SELECT id, client_id, secret_hash, puid, tx_power FROM registrations WHERE id = ?", (registration_id,)
        )
        return None if row is None else Registration(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4])

    def erase_registration(self, registration_id: int) -> None:
        """Forget the pseudonym: its PUID, tokens and exposures go (the device must register again)."""
        self._db.execute("DELETE FROM registrations WHERE id = ?", (registration_id,))

    def seen(self, registration_id: int, day: int) -> None:
        """The device behind a registration was heard from on ``day`` (the UTC day only, nothing finer)."""
        self._db.execute(
            "UPDATE registrations SET seen_day = ? WHERE id = ? AND seen_day < ?", (day, registration_id, day)
        )

    def purge_silent_registrations(self, oldest_day: int) -> int:
        """Forget registrations not heard from since before ``oldest_day`` (their tokens and exposures go
        with them); how many went."""
        return self._db.execute("DELETE FROM registrations WHERE seen_day < ?", (oldest_day,)).rowcount

    def add_access_token(self, token_hash: bytes, registration_id: int, expires: float) -> None:
        self._db.execute("INSERT INTO access_tokens VALUES (?, ?, ?)", (token_hash, registration_id, expires))

    def access_token(self, token_hash: bytes, now: float) -> int | None:
        row = self._one("SELECT registration_id FROM access_tokens WHERE hash = ? AND expires > ?", (token_hash, now))
        return None if row is None else row[0]

    def count_status_poll(self, registration_id: int, day: int, limit: int) -> int | None:
        """Count one status poll on UTC ``day``; the number of polls left today, or None when the limit
        was already reached (nothing is counted then)."""
        with self._tx() as db:
            row = db.execute("SELECT poll_day, polls FROM registrations WHERE id = ?", (registration_id,)).fetchone()
            polls = row[1] if row[0] == day else 0
            if polls >= limit:
                return None
            db.execute(
                "UPDATE registrations SET poll_day = ?, polls = ? WHERE id = ?", (day, polls + 1, registration_id)
            )
            return limit - polls - 1

    # ---- EBID: broadcast keys and exposures ----------------------------------------------------------

    def broadcast_keys(self, periods: Sequence[int], new_key: Callable[[], bytes]) -> dict[int, bytes]:
        """BK_t for each period, creating missing ones with ``new_key()``."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO broadcast_keys VALUES (?, ?)", [(p, new_key()) for p in periods])
            return self._bks(db, periods)

    def existing_broadcast_keys(self, periods: Iterable[int]) -> dict[int, bytes]:
        return self._bks(self._db, list(set(periods)))

    @staticmethod
    def _bks(db: sqlite3.Connection, periods: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for i in range(0, len(periods), 500):
            chunk = list(periods[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for p, k in db.execute(f"SELECT period, key FROM broadcast_keys WHERE period IN ({marks})", chunk):
                out[p] = bytes(k)
        return out

    def file_report(
        self,
        token_hash: bytes,
        now: float,
        rows: Sequence[tuple[int, Exposure]],
        forwards: Sequence[tuple[int, bytes]],
    ) -> bool:
        """Spend the upload token, store the (registration id, exposure) rows and queue the forwards for
        other countries, all or nothing; False (and nothing stored) if the token was spent meanwhile."""
        with self._tx() as db:
            if not self._spend_upload_token(db, token_hash, now):
                return False
            self._insert_exposures(db, rows, now)
            db.executemany(
                "INSERT INTO outbox (country_code, body, created, next_attempt) VALUES (?, ?, ?, ?)",
                [(cc, body, now, now) for cc, body in forwards],
            )
            return True

    def accept_forward(self, message_id: str, now: float, rows: Sequence[tuple[int, Exposure]]) -> bool:
        """Store a peer's forwarded exposures once per message id; False for a message seen before (a
        retry after a lost answer), which then changes nothing."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO federation_seen VALUES (?, ?)", (message_id, now))
            if cur.rowcount != 1:
                return False
            self._insert_exposures(db, rows, now)
            return True

    @staticmethod
    def _insert_exposures(db: sqlite3.Connection, rows: Sequence[tuple[int, Exposure]], now: float) -> None:
        db.executemany(
            "INSERT INTO exposures VALUES (?, ?, ?, ?, ?, ?)",
            [(rid, e.source, e.period, e.time, json.dumps(wire.scans_body(e.scans)), now) for rid, e in rows],
        )

    def exposures_of(self, registration_id: int) -> list[Exposure]:
        rows = self._db.execute(
            "SELECT source, period, time, scans FROM exposures WHERE registration_id = ? ORDER BY time",
            (registration_id,),
        ).fetchall()
        return [Exposure(r[0], r[1], r[2], wire.parse_scans(json.loads(r[3]), "scans")) for r in rows]

    # ---- federation outbox ---------------------------------------------------------------------------

    def due_forwards(self, now: float) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT id, country_code, body, attempts FROM outbox WHERE next_attempt <= ? ORDER BY id", (now,)
        ).fetchall()
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def next_forward_time(self) -> float | None:
        return self._one("SELECT MIN(next_attempt) FROM outbox")[0]

    def forward_done(self, item_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def forward_retry(self, item_id: int, next_attempt: float) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ? WHERE id = ?", (next_attempt, item_id)
        )

    # ---- retention -----------------------------------------------------------------------------------

    def expire(self, now: float, oldest_key_interval: int, oldest_period: int, oldest_exposure: float) -> None:
        """Delete what retention no longer allows: old keys, BK_t, exposures; spent or stale codes."""
        with self._tx() as db:
            db.execute("DELETE FROM published_keys WHERE rolling_start + rolling_period <= ?", (oldest_key_interval,))
            db.execute("DELETE FROM broadcast_keys WHERE period < ?", (oldest_period,))
            db.execute("DELETE FROM exposures WHERE time < ?", (oldest_exposure,))
            db.execute("DELETE FROM federation_seen WHERE received < ?", (oldest_exposure,))
            db.execute("DELETE FROM outbox WHERE created < ?", (oldest_exposure,))
            day_ago = now - 86_400
            db.execute(
                "UPDATE issued_tans SET state = (SELECT CASE WHEN used IS NULL THEN 'expired' ELSE 'used' END "
                "FROM tans WHERE tans.hash = issued_tans.tan_hash) WHERE state IS NULL AND tan_hash IN "
                "(SELECT hash FROM tans WHERE expires < ?)",
                (day_ago,),
            )
            db.execute(
                "INSERT INTO daily_counts SELECT CAST(expires / 86400 AS INTEGER), 'tans_expired', COUNT(*) FROM tans "
                "WHERE expires < ? AND used IS NULL GROUP BY 1 ON CONFLICT (day, name) DO UPDATE "
                "SET count = count + excluded.count",
                (day_ago,),
            )
            db.execute("DELETE FROM issued_tans WHERE expires < ?", (oldest_exposure,))
            db.execute("DELETE FROM tans WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM upload_tokens WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM enrolment_codes WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM challenges WHERE expires < ?", (now,))
            db.execute("DELETE FROM access_tokens WHERE expires < ?", (now,))

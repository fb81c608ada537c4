"""The backend's own SQLite store: the only module that writes SQL.

The server's promises rest on this file, so each is a single statement or transaction: a TAN, upload
token, enrolment code or challenge is spent with ``UPDATE … WHERE spent = 0`` (two racing requests
cannot both win), and a request that fails validation writes nothing. The store keeps no IP address, no
TAN or token in clear (SHA-256 only), and no EBID: a report is kept as the PUID's exposure rows.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.paths import ensure_private_dir
from agent.protocol import wire
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey

DB_FILE = "backend.db"
_SCHEMA_V1 = """
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
_UNLINKABLE = """
ALTER TABLE tans ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
UPDATE tans SET spent = used IS NOT NULL;
ALTER TABLE tans DROP COLUMN used;
ALTER TABLE upload_tokens ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
UPDATE upload_tokens SET spent = used IS NOT NULL;
ALTER TABLE upload_tokens DROP COLUMN used;
ALTER TABLE enrolment_codes ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
UPDATE enrolment_codes SET spent = used IS NOT NULL;
ALTER TABLE enrolment_codes DROP COLUMN used;
ALTER TABLE registrations DROP COLUMN created;
CREATE TABLE exposures_by_pseudonym (
    registration_id INTEGER NOT NULL REFERENCES registrations(id) ON DELETE CASCADE,
    period INTEGER NOT NULL, time REAL NOT NULL, scans TEXT NOT NULL,
    PRIMARY KEY (registration_id, period, time, scans)) WITHOUT ROWID;
INSERT OR IGNORE INTO exposures_by_pseudonym SELECT registration_id, period, time, scans FROM exposures;
DROP TABLE exposures;
ALTER TABLE exposures_by_pseudonym RENAME TO exposures;
CREATE TABLE spent_submission_tokens (hash BLOB PRIMARY KEY) WITHOUT ROWID;
"""
"""Schema 2, a backend that cannot link (issue 13): no time a code, TAN or token was spent (a flag
instead), no registration time, exposures kept per pseudonym with no report id or report time, in
primary-key order rather than arrival order (WITHOUT ROWID), and spent submission tokens as bare hashes."""

_MIGRATIONS = (_SCHEMA_V1, _UNLINKABLE)
"""Step i takes the store from user_version i to i + 1; a new step is appended, never edited."""
SCHEMA_VERSION = len(_MIGRATIONS)


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


@dataclass(frozen=True)
class Exposure:
    """A contact of a registered device, reported by someone diagnosed (here or via federation): one
    submission, one EBID heard in one period. Nothing says which report or reporter it came from, so the
    risk model scores each exposure as its own source."""

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
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: store schema {version} is newer than this backend ({SCHEMA_VERSION})")
        self._db.execute("PRAGMA secure_delete=ON")  # spent rows leave no readable trace in free pages
        self._db.execute("PRAGMA foreign_keys=OFF")  # a migration rebuilds tables others refer to
        with self._tx() as db:
            for step in _MIGRATIONS[version:]:
                for statement in filter(str.strip, step.split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db.execute("PRAGMA foreign_keys=ON")

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
            cur = db.execute("UPDATE tans SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?", (code_hash, now))
            row = db.execute("SELECT onset_day, spent, expires FROM tans WHERE hash = ?", (code_hash,)).fetchone()
            if cur.rowcount != 1:
                if row is None:
                    return None, Spent.UNKNOWN
                return None, (Spent.USED if row[1] else Spent.EXPIRED)
            db.execute(
                "INSERT INTO upload_tokens (hash, expires, onset_day, fake) VALUES (?, ?, ?, 0)",
                (token_hash, token_expires, row[0]),
            )
            return row[0], None

    def add_fake_upload_token(self, token_hash: bytes, expires: float) -> None:
        self._db.execute(
            "INSERT INTO upload_tokens (hash, expires, onset_day, fake) VALUES (?, ?, NULL, 1)", (token_hash, expires)
        )

    def upload_token(self, token_hash: bytes, now: float) -> UploadToken | Spent:
        row = self._one("SELECT onset_day, fake, spent, expires FROM upload_tokens WHERE hash = ?", (token_hash,))
        if row is None:
            return Spent.UNKNOWN
        if row[2]:
            return Spent.USED
        if row[3] <= now:
            return Spent.EXPIRED
        return UploadToken(row[0], bool(row[1]))

    def _spend_upload_token(self, db: sqlite3.Connection, token_hash: bytes, now: float) -> bool:
        cur = db.execute(
            "UPDATE upload_tokens SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?",
            (token_hash, now),
        )
        return cur.rowcount == 1

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
        row = self._one("SELECT spent, expires FROM enrolment_codes WHERE hash = ?", (code_hash,))
        if row is None:
            return Spent.UNKNOWN
        if row[0]:
            return Spent.USED
        return Spent.EXPIRED if row[1] <= now else None

    def add_challenge(self, challenge: bytes, expires: float) -> None:
        self._db.execute("INSERT INTO challenges VALUES (?, ?)", (challenge, expires))

    def challenge_valid(self, challenge: bytes, now: float) -> bool:
        return self._one("SELECT 1 FROM challenges WHERE challenge = ? AND expires > ?", (challenge, now)) is not None

    def register(
        self, challenge: bytes, code_hash: bytes, now: float, client_id: str, secret_hash: bytes, puid: bytes
    ) -> bool:
        """Spend the challenge and the enrolment code and create the registration, all or nothing."""
        try:
            with self._tx() as db:
                cur = db.execute("DELETE FROM challenges WHERE challenge = ? AND expires > ?", (challenge, now))
                if cur.rowcount != 1:
                    raise _Rollback
                cur = db.execute(
                    "UPDATE enrolment_codes SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?",
                    (code_hash, now),
                )
                if cur.rowcount != 1:
                    raise _Rollback
                db.execute(
                    "INSERT INTO registrations (id, client_id, secret_hash, puid) VALUES (?, ?, ?, ?)",
                    (secrets.randbits(62), client_id, secret_hash, puid),
                )
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
        row = self._one("SELECT id, client_id, secret_hash, puid FROM registrations WHERE id = ?", (registration_id,))
        return None if row is None else Registration(row[0], row[1], bytes(row[2]), bytes(row[3]))

    def erase_registration(self, registration_id: int) -> None:
        """Forget the pseudonym: its PUID, tokens and exposures go (the device must register again)."""
        self._db.execute("DELETE FROM registrations WHERE id = ?", (registration_id,))

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

    def file_submission(
        self,
        token_hash: bytes,
        now: float,
        rows: Sequence[tuple[int, Exposure]],
        forwards: Sequence[tuple[int, bytes]],
    ) -> bool:
        """Remember the submission token's hash as spent, store the (registration id, exposure) rows and
        queue the forwards, all or nothing; False (and nothing stored) if the token was spent before."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO spent_submission_tokens VALUES (?)", (token_hash,))
            if cur.rowcount != 1:
                return False
            self._insert_exposures(db, rows)
            db.executemany(
                "INSERT INTO outbox (country_code, body, created, next_attempt) VALUES (?, ?, ?, ?)",
                [(cc, body, now, now) for cc, body in forwards],
            )
            return True

    def spend_tan(self, code_hash: bytes, now: float) -> Spent | None:
        """Spend a TAN that buys submission tokens; None on success, else why it was refused."""
        with self._tx() as db:
            cur = db.execute("UPDATE tans SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?", (code_hash, now))
            if cur.rowcount == 1:
                return None
            row = db.execute("SELECT spent FROM tans WHERE hash = ?", (code_hash,)).fetchone()
            return Spent.UNKNOWN if row is None else (Spent.USED if row[0] else Spent.EXPIRED)

    def accept_forward(self, message_id: str, now: float, rows: Sequence[tuple[int, Exposure]]) -> bool:
        """Store a peer's forwarded exposures once per message id; False for a message seen before (a
        retry after a lost answer), which then changes nothing."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO federation_seen VALUES (?, ?)", (message_id, now))
            if cur.rowcount != 1:
                return False
            self._insert_exposures(db, rows)
            return True

    @staticmethod
    def _insert_exposures(db: sqlite3.Connection, rows: Sequence[tuple[int, Exposure]]) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO exposures VALUES (?, ?, ?, ?)",
            [(rid, e.period, e.time, json.dumps(wire.scans_body(e.scans))) for rid, e in rows],
        )

    def exposures_of(self, registration_id: int) -> list[Exposure]:
        rows = self._db.execute(
            "SELECT period, time, scans FROM exposures WHERE registration_id = ? ORDER BY time",
            (registration_id,),
        ).fetchall()
        return [Exposure(r[0], r[1], wire.parse_scans(json.loads(r[2]), "scans")) for r in rows]

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
            db.execute("DELETE FROM tans WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM upload_tokens WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM enrolment_codes WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM challenges WHERE expires < ?", (now,))
            db.execute("DELETE FROM access_tokens WHERE expires < ?", (now,))

"""The backend database's layout and the primitives every part of the backend store builds on.

Why it exists: the schema and its migration steps are one list that must stay in one place (the portal's
tables are step 2 of it), and the connection, transaction, daily-count and upload-token helpers are shared
by the GAEN/DP-3T side (``agent.server.db``) and the EBID side (``agent.server.ebid_store``) of
``ServerStore``; keeping them here lets each side be a module of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.server.config import DB_FILE as DB_FILE  # re-exported: the store's file name
from agent.server.database import Database, Engine, EngineSql, Statement

SCHEMA = """
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
# Each step brings the store from its position's version to the next (step 0: version 1 -> 2). A step is
# appended, never edited; it keeps the data a store holds (step 4 turns use times into spent flags and
# drops what could link, which is its purpose). ``SCHEMA`` is version 1, laid down only in a new store.
# A statement with no mechanical PostgreSQL translation carries both forms (``EngineSql``); the SQLite text
# is what existing stores ran.
MIGRATIONS: tuple[tuple[Statement, ...], ...] = (
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
        EngineSql(
            """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
        ),
        EngineSql(
            """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ),
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
    # 4: a backend that cannot link (issue 13). No time a code, TAN or token was spent (a flag instead: a
    # TAN's use time plus the token lifetime was the upload token's expiry, a code's use time the
    # registration's creation time), no registration time, exposures kept per pseudonym with no report id
    # or report time and in primary-key order rather than arrival order (WITHOUT ROWID), and the spent
    # blind-signed submission tokens as bare hashes.
    (
        "ALTER TABLE tans ADD COLUMN spent INTEGER NOT NULL DEFAULT 0",
        EngineSql(
            "UPDATE tans SET spent = used IS NOT NULL",
            "UPDATE tans SET spent = CASE WHEN used IS NULL THEN 0 ELSE 1 END",
        ),
        "ALTER TABLE tans DROP COLUMN used",
        "ALTER TABLE upload_tokens ADD COLUMN spent INTEGER NOT NULL DEFAULT 0",
        EngineSql(
            "UPDATE upload_tokens SET spent = used IS NOT NULL",
            "UPDATE upload_tokens SET spent = CASE WHEN used IS NULL THEN 0 ELSE 1 END",
        ),
        "ALTER TABLE upload_tokens DROP COLUMN used",
        "ALTER TABLE enrolment_codes ADD COLUMN spent INTEGER NOT NULL DEFAULT 0",
        EngineSql(
            "UPDATE enrolment_codes SET spent = used IS NOT NULL",
            "UPDATE enrolment_codes SET spent = CASE WHEN used IS NULL THEN 0 ELSE 1 END",
        ),
        "ALTER TABLE enrolment_codes DROP COLUMN used",
        "ALTER TABLE registrations DROP COLUMN created",
        """CREATE TABLE exposures_by_pseudonym (
            registration_id INTEGER NOT NULL REFERENCES registrations(id) ON DELETE CASCADE,
            period INTEGER NOT NULL, time REAL NOT NULL, scans TEXT NOT NULL,
            PRIMARY KEY (registration_id, period, time, scans)) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO exposures_by_pseudonym SELECT registration_id, period, time, scans FROM exposures",
        "DROP TABLE exposures",
        "ALTER TABLE exposures_by_pseudonym RENAME TO exposures",
        "CREATE TABLE spent_submission_tokens (hash BLOB PRIMARY KEY) WITHOUT ROWID",
    ),
    # 5: a TAN carries the officer's report type (the export's ReportType number) to the upload token and
    # so to the keys published with it; older TANs were all confirmed tests.
    (
        "ALTER TABLE tans ADD COLUMN report_type INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE upload_tokens ADD COLUMN report_type INTEGER NOT NULL DEFAULT 1",
    ),
    # 6: re-registration without a person (issue 17). A registration's capability is blind-signed
    # (agent.server.ebid), so nothing is stored when it is issued; a spent one is remembered by its hash
    # alone, with no registration id and no time, so it joins the new pseudonym to nothing.
    ("CREATE TABLE spent_capabilities (hash BLOB PRIMARY KEY)",),
    # 7: no time in one table equals or derives another's (issue 13). The audit log keeps the UTC day of an
    # entry, not its time ("TAN issued at t" matched the token the device took when it used the TAN); TAN
    # expiries are rounded up to the hour (the portal's listing is to the hour), upload and access token
    # expiries to the end of a UTC day (``agent.server.codes``). The append-only log is rebuilt, not
    # updated: its triggers refuse an UPDATE, and DROP TABLE fires none.
    (
        """CREATE TABLE audit_days (
            id INTEGER PRIMARY KEY, day INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            detail TEXT NOT NULL)""",
        "INSERT INTO audit_days (id, day, actor, action, detail) "
        "SELECT id, CAST(FLOOR(time / 86400) AS INTEGER), actor, action, detail FROM audit_log",
        "DROP TABLE audit_log",
        "ALTER TABLE audit_days RENAME TO audit_log",
        EngineSql(
            """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        ),
        EngineSql(
            """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
            "SELECT 1",  # PostgreSQL's one trigger above refuses both
        ),
        "UPDATE tans SET expires = CEIL(expires / 3600) * 3600",
        "UPDATE issued_tans SET expires = CEIL(expires / 3600) * 3600",
        "UPDATE upload_tokens SET expires = CEIL(expires / 86400) * 86400",
        "UPDATE access_tokens SET expires = CEIL(expires / 86400) * 86400",
    ),
    # 8: an EBID exposure keeps the report type of the key its submission token verified under (one
    # blind-signing key per type, agent.server.ebid), so scoring weighs it as GAEN's keys are; exposures
    # filed before were all under the one key there was, the confirmed-test key.
    ("ALTER TABLE exposures ADD COLUMN report_type INTEGER NOT NULL DEFAULT 1",),
    # 9: guesses counted in the database, so a limit holds across workers (issue 18,
    # agent.server.ratelimit): a key that names no address and changes daily, and when, nothing else.
    (
        "CREATE TABLE failed_guesses (id INTEGER PRIMARY KEY, key BLOB NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX failed_guesses_key ON failed_guesses (key, at)",
        "CREATE INDEX failed_guesses_at ON failed_guesses (at)",
    ),
)
SCHEMA_VERSION = 1 + len(MIGRATIONS)


class Rollback(Exception):
    """Raised inside a transaction to undo it."""


class Spent(StrEnum):
    """Why a one-time code or token was refused."""

    UNKNOWN = "unknown"
    USED = "already used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class RedeemedTan:
    """What a spent TAN hands on: the officer's onset day (or None) and report type."""

    onset_day: int | None
    report_type: int


MIGRATION_LOCK = 0x70726F78_6D696772  # PostgreSQL advisory lock: workers starting together migrate one at a time


def schema_version(db: Database) -> int:
    """The schema version the database is at (0: empty). SQLite keeps it in ``PRAGMA user_version``, as
    stores made before PostgreSQL support do; PostgreSQL in a one-row table."""
    if db.engine is Engine.SQLITE:
        return int(db.one("PRAGMA user_version")[0])
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.one("SELECT MAX(version) FROM schema_version")
    return 0 if row is None or row[0] is None else int(row[0])


def migrate(db: Database) -> None:
    """Bring the database to ``SCHEMA_VERSION`` in one transaction (all steps or none)."""
    if db.engine is Engine.SQLITE:
        db.execute("PRAGMA foreign_keys=OFF")  # a migration rebuilds tables others refer to
    try:
        with db.transaction():
            if db.engine is Engine.POSTGRESQL:
                db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            version = schema_version(db)
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{db.describe()}: store schema {version} is newer than this backend ({SCHEMA_VERSION})"
                )
            if version == SCHEMA_VERSION:
                return
            if version < 1:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
            for step in MIGRATIONS[max(version, 1) - 1 :]:
                for statement in step:
                    db.execute(statement)
            if db.engine is Engine.SQLITE:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            else:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    finally:
        if db.engine is Engine.SQLITE:
            db.execute("PRAGMA foreign_keys=ON")


class Tables:
    """The backend database, opened and migrated; ``ServerStore`` is built on it. ``target`` is a SQLite
    path, a ``postgresql://`` URL or an open ``Database`` (shared with the portal's tables)."""

    def __init__(self, target: str | Path | Database) -> None:
        self._db = target if isinstance(target, Database) else Database(target)
        self.path = self._db.path
        migrate(self._db)

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        with self._db.transaction() as db:
            yield db

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._db.one(sql, args)

    @staticmethod
    def _count(db: Database, name: str, now: float, n: int = 1) -> None:
        db.execute(
            "INSERT INTO daily_counts VALUES (?, ?, ?) ON CONFLICT (day, name) DO UPDATE "
            "SET count = daily_counts.count + ?",
            (int(now // 86_400), name, n, n),
        )

    def _spend_upload_token(self, db: Database, token_hash: bytes, now: float) -> bool:
        """Spend the token; a real one (not dummy traffic) counts as one upload today."""
        cur = db.execute(
            "UPDATE upload_tokens SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ? RETURNING fake",
            (token_hash, now),
        )
        spent = cur.fetchall()
        if spent and not spent[0][0]:
            self._count(db, "uploads", now)
        return bool(spent)

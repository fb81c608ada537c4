"""The backend's own store (SQLite or PostgreSQL): the one place (with the modules it is built from) that writes SQL.

The server's promises rest on this file, so each is a single statement or transaction: a TAN, upload
token, enrolment code or challenge is spent with ``UPDATE … WHERE spent = 0`` (two racing requests
cannot both win), and a request that fails validation writes nothing. The store keeps no IP address, no
TAN or token in clear (SHA-256 only), and no EBID: a report is kept as the PUID's exposure rows.

This module holds the GAEN/DP-3T side and what all of the backend shares: meta values, daily counts, TANs
and upload tokens, published keys, the federation outbox and retention. The schema and its migrations are
in ``agent.server.tables``, the EBID tables in ``agent.server.ebid_store``; ``ServerStore`` is all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.server.ebid_store import EbidTables, Exposure, Payment, Registration
from agent.server.tables import DB_FILE, SCHEMA_VERSION, RedeemedTan, Spent

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "Exposure",
    "OutboxItem",
    "Payment",
    "RedeemedTan",
    "Registration",
    "ServerStore",
    "Spent",
    "UploadToken",
]


@dataclass(frozen=True)
class UploadToken:
    onset_day: int | None
    fake: bool
    report_type: int = 1


@dataclass(frozen=True)
class OutboxItem:
    id: int
    country_code: int
    body: bytes
    attempts: int


class ServerStore(EbidTables):
    """The backend's store on SQLite or PostgreSQL (``agent.server.database``). Its methods block: the
    server calls them from worker threads, never on the event loop's thread."""

    # ---- meta ----------------------------------------------------------------------------------------

    def meta(self, name: str) -> bytes | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else bytes(row[0])

    def meta_setdefault(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless a value is there; return what is stored."""
        self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value))
        return bytes(self._one("SELECT value FROM meta WHERE name = ?", (name,))[0])

    # ---- daily counts (the dashboard's and /metrics' aggregates) ------------------------------------

    def count(self, name: str, now: float, n: int = 1) -> None:
        """Add ``n`` to today's count of ``name`` (a number per UTC day, never a row per person)."""
        self._count(self._db, name, now, n)

    def daily_counts(self, first_day: int) -> dict[tuple[int, str], int]:
        rows = self._db.execute("SELECT day, name, count FROM daily_counts WHERE day >= ?", (first_day,))
        return {(day, name): count for day, name, count in rows}

    def count_totals(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, CAST(SUM(count) AS BIGINT) FROM daily_counts GROUP BY name")
        return {name: total for name, total in rows}

    # ---- TANs and upload tokens ----------------------------------------------------------------------

    def add_tan(self, code_hash: bytes, expires: float, onset_day: int | None, report_type: int = 1) -> None:
        self._db.execute(
            "INSERT INTO tans (hash, expires, onset_day, report_type) VALUES (?, ?, ?, ?)",
            (code_hash, expires, onset_day, report_type),
        )

    def redeem_tan(self, code_hash: bytes, now: float, token_hash: bytes, token_expires: float) -> RedeemedTan | Spent:
        """Spend the TAN and create its upload token (with the TAN's onset day and report type) in one
        transaction; why not when it cannot be spent."""
        with self._tx() as db:
            cur = db.execute("UPDATE tans SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?", (code_hash, now))
            row = db.execute(
                "SELECT onset_day, spent, expires, report_type FROM tans WHERE hash = ?", (code_hash,)
            ).fetchone()
            if cur.rowcount != 1:
                if row is None:
                    return Spent.UNKNOWN
                return Spent.USED if row[1] else Spent.EXPIRED
            db.execute(
                "INSERT INTO upload_tokens (hash, expires, onset_day, fake, report_type) VALUES (?, ?, ?, 0, ?)",
                (token_hash, token_expires, row[0], row[3]),
            )
            self._count(db, "tans_used", now)
            return RedeemedTan(row[0], row[3])

    def peek_tan(self, code_hash: bytes, now: float) -> RedeemedTan | Spent:
        """What an open TAN carries (its onset day and report type), leaving it open; why not when it
        cannot be spent."""
        row = self._one("SELECT onset_day, spent, expires, report_type FROM tans WHERE hash = ?", (code_hash,))
        if row is None:
            return Spent.UNKNOWN
        if row[1]:
            return Spent.USED
        return Spent.EXPIRED if row[2] <= now else RedeemedTan(row[0], row[3])

    def revoke_tan(self, code_hash: bytes, now: float) -> bool:
        """Delete an open TAN so it can no longer be redeemed; False when it is used, expired or gone."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM tans WHERE hash = ? AND spent = 0 AND expires > ?", (code_hash, now))
            if cur.rowcount != 1:
                return False
            self._count(db, "tans_revoked", now)
            return True

    def expired_tans_by_day(self, now: float) -> dict[int, int]:
        """TANs that expired unused and are still stored, by the UTC day they expired (retention counts
        the older ones into ``daily_counts`` as it deletes them)."""
        rows = self._db.execute(
            "SELECT CAST(FLOOR(expires / 86400) AS INTEGER), COUNT(*) FROM tans WHERE spent = 0 AND expires <= ? "
            "GROUP BY 1",
            (now,),
        )
        return dict(rows.fetchall())

    def outbox_state(self) -> tuple[int, int]:
        """Forwards waiting in the federation outbox, and how many of them have failed at least once."""
        row = self._one(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM outbox"
        )
        return row[0], row[1]

    def keys_by_day(self, scheme: SchemeName) -> dict[int, int]:
        """Stored keys per UTC day of their release (tag)."""
        rows = self._db.execute(
            "SELECT tag_ms / 86400000, COUNT(*) FROM published_keys WHERE scheme = ? GROUP BY 1", (scheme.value,)
        )
        return dict(rows.fetchall())

    def tan_states(self, now: float) -> dict[bytes, str]:
        """Each stored TAN's state: open, used or expired."""
        rows = self._db.execute("SELECT hash, spent, expires FROM tans")
        return {bytes(h): "used" if spent else ("expired" if expires <= now else "open") for h, spent, expires in rows}

    def upload_token(self, token_hash: bytes, now: float) -> UploadToken | Spent:
        row = self._one(
            "SELECT onset_day, fake, spent, expires, report_type FROM upload_tokens WHERE hash = ?", (token_hash,)
        )
        if row is None:
            return Spent.UNKNOWN
        if row[2]:
            return Spent.USED
        if row[3] <= now:
            return Spent.EXPIRED
        return UploadToken(row[0], bool(row[1]), row[4])

    def publish_keys(
        self, token_hash: bytes, now: float, scheme: SchemeName, keys: Sequence[tuple[PublishedKey, int]]
    ) -> bool:
        """Spend the upload token and store (key, release tag ms) pairs atomically; False if the token
        was spent meanwhile. A key already stored (a retried upload) is kept once."""
        with self._tx() as db:
            if not self._spend_upload_token(db, token_hash, now):
                return False
            db.executemany(
                "INSERT INTO published_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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

    # ---- guesses (agent.server.ratelimit) ------------------------------------------------------------

    def reserve_guess(self, key: bytes, now: float, since: float, limit: int) -> tuple[int | None, float]:
        """Count a guess under ``key`` unless the window (after ``since``) holds ``limit`` already: the
        new row's id, or None; and the time of the window's oldest guess. One transaction under a lock
        for ``key`` (on every engine and worker), so two guesses cannot both see room for one. Rows out
        of the window are left to ``forget_guesses``: deleting them here too would lock rows in another
        order than maintenance's delete does, and two such deletes can deadlock on PostgreSQL."""
        with self._tx() as db:
            db.lock_for_transaction(int.from_bytes(key[:8], "big", signed=True))
            count, oldest = db.one(
                "SELECT COUNT(*), MIN(at) FROM failed_guesses WHERE key = ? AND at > ?", (key, since)
            )
            if count >= limit:
                return None, oldest
            row = db.one("INSERT INTO failed_guesses (key, at) VALUES (?, ?) RETURNING id", (key, now))
            return row[0], now if oldest is None else oldest

    def release_guess(self, row: int) -> None:
        """Drop a counted guess (it was right, or not a guess after all)."""
        self._db.execute("DELETE FROM failed_guesses WHERE id = ?", (row,))

    def forget_guesses(self, since: float) -> None:
        """Drop every guess at or before ``since``: out of the window (maintenance calls it at each list
        bucket, so a row outlives its window by a bucket at most)."""
        self._db.execute("DELETE FROM failed_guesses WHERE at <= ?", (since,))

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
                "UPDATE issued_tans SET state = (SELECT CASE WHEN spent <> 0 THEN 'used' ELSE 'expired' END "
                "FROM tans WHERE tans.hash = issued_tans.tan_hash) WHERE state IS NULL AND tan_hash IN "
                "(SELECT hash FROM tans WHERE expires < ?)",
                (day_ago,),
            )
            db.execute(
                "INSERT INTO daily_counts SELECT CAST(FLOOR(expires / 86400) AS INTEGER), 'tans_expired', COUNT(*) "
                "FROM tans "
                "WHERE expires < ? AND spent = 0 GROUP BY 1 ON CONFLICT (day, name) DO UPDATE "
                "SET count = daily_counts.count + excluded.count",
                (day_ago,),
            )
            db.execute("DELETE FROM issued_tans WHERE expires < ?", (oldest_exposure,))
            db.execute("DELETE FROM tans WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM upload_tokens WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM enrolment_codes WHERE expires < ?", (day_ago,))
            db.execute("DELETE FROM challenges WHERE expires < ?", (now,))
            db.execute("DELETE FROM access_tokens WHERE expires < ?", (now,))

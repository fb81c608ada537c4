"""The backend store's EBID tables: enrolment codes, challenges, registrations and their access tokens,
broadcast keys, and the exposures reported to registered devices.

Why it exists: the EBID scheme keeps state per registered pseudonym (the GAEN/DP-3T side keeps only
published keys), so its SQL is a concept of its own; it is mixed into ``agent.server.db.ServerStore`` and
shares its connection and transactions (``agent.server.tables``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.clock import day_of
from agent.protocol import wire
from agent.schemes.published import ReportType
from agent.server.database import Database, IntegrityError
from agent.server.tables import RedeemedTan, Rollback, Spent, Tables


@dataclass(frozen=True)
class Registration:
    id: int
    client_id: str
    secret_hash: bytes
    puid: bytes
    tx_power: int | None = None


@dataclass(frozen=True)
class Payment:
    """What a registration spends: the hash of an enrolment code, or of a re-registration capability's
    token (exactly one of them)."""

    code_hash: bytes | None = None
    capability_hash: bytes | None = None


@dataclass(frozen=True)
class Exposure:
    """A contact of a registered device, reported by someone diagnosed (here or via federation): one
    submission, one EBID heard in one period. Nothing says which report or reporter it came from, so the
    risk model scores each exposure as its own source."""

    period: int
    time: float
    scans: tuple[wire.ScanRecord, ...]
    report_type: ReportType = ReportType.CONFIRMED_TEST
    """The report type of the key that signed the submission's token (every reporter of that type shares
    it), weighed by a risk model that weighs report types."""


class EbidTables(Tables):
    """The EBID half of ``ServerStore``."""

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
        payment: Payment,
        now: float,
        client_id: str,
        secret_hash: bytes,
        puid: bytes,
        tx_power: int | None = None,
    ) -> bool:
        """Spend the challenge and what pays for the pseudonym (an enrolment code, or a re-registration
        capability remembered as spent by its hash) and create the registration, all or nothing. The
        registration's id is random (a sequence would order registrations in time) and it keeps no time,
        only the UTC day it was last seen."""
        try:
            with self._tx() as db:
                cur = db.execute("DELETE FROM challenges WHERE challenge = ? AND expires > ?", (challenge, now))
                if cur.rowcount != 1:
                    raise Rollback
                if payment.code_hash is not None:
                    cur = db.execute(
                        "UPDATE enrolment_codes SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ?",
                        (payment.code_hash, now),
                    )
                    if cur.rowcount != 1:
                        raise Rollback
                else:
                    spent = (payment.capability_hash,)
                    if db.execute("SELECT 1 FROM spent_capabilities WHERE hash = ?", spent).fetchone():
                        raise Rollback
                    db.execute("INSERT INTO spent_capabilities (hash) VALUES (?)", spent)
                db.execute(
                    "INSERT INTO registrations (id, client_id, secret_hash, puid, tx_power, seen_day)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (secrets.randbits(62), client_id, secret_hash, puid, tx_power, day_of(now)),
                )
                self._count(db, "ebid_registrations" if payment.code_hash is not None else "ebid_reregistrations", now)
        except (Rollback, IntegrityError):
            return False
        return True

    def capability_spent(self, capability_hash: bytes) -> bool:
        return self._one("SELECT 1 FROM spent_capabilities WHERE hash = ?", (capability_hash,)) is not None

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
        was already reached (nothing is counted then). One conditional ``UPDATE``, so polls racing in
        several workers cannot count past the limit."""
        row = self._db.execute(
            "UPDATE registrations SET polls = CASE WHEN poll_day = ? THEN polls + 1 ELSE 1 END, poll_day = ? "
            "WHERE id = ? AND (poll_day <> ? OR polls < ?) RETURNING polls",
            (day, day, registration_id, day, limit),
        ).fetchone()
        return None if row is None else limit - row[0]

    # ---- EBID: broadcast keys and exposures ----------------------------------------------------------

    def broadcast_keys(self, periods: Sequence[int], new_key: Callable[[], bytes]) -> dict[int, bytes]:
        """BK_t for each period, creating missing ones with ``new_key()``."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO broadcast_keys VALUES (?, ?) ON CONFLICT DO NOTHING", [(p, new_key()) for p in periods]
            )
            return self._bks(db, periods)

    def existing_broadcast_keys(self, periods: Iterable[int]) -> dict[int, bytes]:
        return self._bks(self._db, list(set(periods)))

    @staticmethod
    def _bks(db: Database, periods: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for i in range(0, len(periods), 500):
            chunk = list(periods[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for p, k in db.execute(f"SELECT period, key FROM broadcast_keys WHERE period IN ({marks})", chunk):
                out[p] = bytes(k)
        return out

    def spend_tan(self, code_hash: bytes, now: float) -> RedeemedTan | Spent:
        """Spend a TAN that buys submission tokens: its onset day and report type, else why it was refused."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tans SET spent = 1 WHERE hash = ? AND spent = 0 AND expires > ? "
                "RETURNING onset_day, report_type",
                (code_hash, now),
            )
            spent = cur.fetchall()
            if spent:
                self._count(db, "tans_used", now)
                return RedeemedTan(spent[0][0], spent[0][1])
            row = db.execute("SELECT spent FROM tans WHERE hash = ?", (code_hash,)).fetchone()
            return Spent.UNKNOWN if row is None else (Spent.USED if row[0] else Spent.EXPIRED)

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
            cur = db.execute("INSERT INTO spent_submission_tokens VALUES (?) ON CONFLICT DO NOTHING", (token_hash,))
            if cur.rowcount != 1:
                return False
            self._insert_exposures(db, rows)
            db.executemany(
                "INSERT INTO outbox (country_code, body, created, next_attempt) VALUES (?, ?, ?, ?)",
                [(cc, body, now, now) for cc, body in forwards],
            )
            return True

    def accept_forward(self, message_id: str, now: float, rows: Sequence[tuple[int, Exposure]]) -> bool:
        """Store a peer's forwarded exposures once per message id; False for a message seen before (a
        retry after a lost answer), which then changes nothing."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO federation_seen VALUES (?, ?) ON CONFLICT DO NOTHING", (message_id, now))
            if cur.rowcount != 1:
                return False
            self._insert_exposures(db, rows)
            return True

    @staticmethod
    def _insert_exposures(db: Database, rows: Sequence[tuple[int, Exposure]]) -> None:
        db.executemany(
            "INSERT INTO exposures (registration_id, period, time, scans, report_type) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(rid, e.period, e.time, json.dumps(wire.scans_body(e.scans)), int(e.report_type)) for rid, e in rows],
        )

    def exposures_of(self, registration_id: int) -> list[Exposure]:
        rows = self._db.execute(
            "SELECT period, time, scans, report_type FROM exposures WHERE registration_id = ? ORDER BY time",
            (registration_id,),
        ).fetchall()
        return [Exposure(r[0], r[1], wire.parse_scans(json.loads(r[2]), "scans"), ReportType(r[3])) for r in rows]

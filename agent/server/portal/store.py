"""The portal's tables (created by the backend store's schema step 2, see ``agent.server.tables``).

It shares the backend store's ``Database`` (either engine), so the portal's SQL stays in the portal while
the schema stays in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.server.database import Database
from agent.server.db import ServerStore


@dataclass(frozen=True)
class Officer:
    id: int
    name: str
    password_hash: str
    totp_secret: str | None
    disabled: bool
    failures: int
    locked_until: float
    totp_last_step: int


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry. It keeps the UTC day only: an exact time of "TAN issued" or "codes issued" was
    the moment a person was handed a secret, which the moment their device next acted would match."""

    id: int
    day: int
    actor: str
    action: str
    detail: str


@dataclass(frozen=True)
class IssuedTan:
    """An issued TAN as the portal lists it: coarse time, officer, state; never what it uploaded."""

    id: int
    tan_hash: bytes
    officer: str
    issued_hour: float
    expires: float
    report_type: str
    note: str
    final_state: str | None


_OFFICER_COLUMNS = "id, name, password_hash, totp_secret, disabled, failures, locked_until, totp_last_step"


def _officer(row: tuple[object, ...] | None) -> Officer | None:
    if row is None:
        return None
    i, name, pw, totp, disabled, failures, locked, step = row
    return Officer(
        int(i),
        str(name),
        str(pw),
        None if totp is None else str(totp),
        bool(disabled),
        int(failures),
        float(locked),
        int(step),
    )  # type: ignore[arg-type]


class PortalStore:
    def __init__(self, target: str | Path | Database) -> None:
        """``target``: the backend store's open ``Database``, or a path or URL to open (and migrate)."""
        self._owned = not isinstance(target, Database)
        self._db = target if isinstance(target, Database) else ServerStore(target).database

    def close(self) -> None:
        """Close the database if this store opened it (a shared one is the backend store's to close)."""
        if self._owned:
            self._db.close()

    # ---- officers ------------------------------------------------------------------------------------

    def add_officer(self, name: str, password_hash: str, totp_secret: str | None, now: float) -> bool:
        cur = self._db.execute(
            "INSERT INTO officers (name, password_hash, totp_secret, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (name, password_hash, totp_secret, now),
        )
        return cur.rowcount == 1

    def officer(self, name: str) -> Officer | None:
        return _officer(self._db.execute(f"SELECT {_OFFICER_COLUMNS} FROM officers WHERE name = ?", (name,)).fetchone())

    def officer_by_id(self, officer_id: int) -> Officer | None:
        row = self._db.execute(f"SELECT {_OFFICER_COLUMNS} FROM officers WHERE id = ?", (officer_id,)).fetchone()
        return _officer(row)

    def officers(self) -> list[Officer]:
        rows = self._db.execute(f"SELECT {_OFFICER_COLUMNS} FROM officers ORDER BY name").fetchall()
        return [o for o in map(_officer, rows) if o is not None]

    def enabled_officers(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM officers WHERE disabled = 0").fetchone()[0]

    def set_disabled(self, officer_id: int) -> None:
        """Disable the account and end its sessions and API tokens."""
        with self._db.transaction() as db:
            db.execute("UPDATE officers SET disabled = 1 WHERE id = ?", (officer_id,))
            db.execute("DELETE FROM officer_sessions WHERE officer_id = ?", (officer_id,))
            db.execute("DELETE FROM api_tokens WHERE officer_id = ?", (officer_id,))

    def reset_officer(self, officer_id: int, password_hash: str, totp_secret: str | None) -> None:
        """New credentials, enabled, unlocked; its sessions end."""
        with self._db.transaction() as db:
            db.execute(
                "UPDATE officers SET password_hash = ?, totp_secret = ?, disabled = 0, failures = 0, "
                "locked_until = 0, totp_last_step = -1 WHERE id = ?",
                (password_hash, totp_secret, officer_id),
            )
            db.execute("DELETE FROM officer_sessions WHERE officer_id = ?", (officer_id,))

    def record_login(self, officer_id: int, failures: int, locked_until: float, totp_step: int | None) -> None:
        if totp_step is None:
            self._db.execute(
                "UPDATE officers SET failures = ?, locked_until = ? WHERE id = ?", (failures, locked_until, officer_id)
            )
        else:
            self._db.execute(
                "UPDATE officers SET failures = ?, locked_until = ?, totp_last_step = ? WHERE id = ?",
                (failures, locked_until, totp_step, officer_id),
            )

    # ---- sessions and API tokens ---------------------------------------------------------------------

    def add_session(self, token_hash: bytes, officer_id: int, expires: float) -> None:
        self._db.execute("INSERT INTO officer_sessions VALUES (?, ?, ?)", (token_hash, officer_id, expires))

    def session_officer(self, token_hash: bytes, now: float) -> int | None:
        row = self._db.execute(
            "SELECT officer_id FROM officer_sessions WHERE hash = ? AND expires > ?", (token_hash, now)
        ).fetchone()
        return None if row is None else int(row[0])

    def end_session(self, token_hash: bytes) -> None:
        self._db.execute("DELETE FROM officer_sessions WHERE hash = ?", (token_hash,))

    def drop_stale_sessions(self, now: float) -> None:
        self._db.execute("DELETE FROM officer_sessions WHERE expires <= ?", (now,))

    def add_api_token(self, token_hash: bytes, officer_id: int, now: float) -> None:
        self._db.execute("INSERT INTO api_tokens VALUES (?, ?, ?)", (token_hash, officer_id, now))

    def api_token_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM api_tokens").fetchone()[0]

    def api_token_officer(self, token_hash: bytes) -> int | None:
        row = self._db.execute("SELECT officer_id FROM api_tokens WHERE hash = ?", (token_hash,)).fetchone()
        return None if row is None else int(row[0])

    # ---- audit log -----------------------------------------------------------------------------------

    def append_audit(self, day: int, actor: str, action: str, detail: str) -> None:
        self._db.execute(
            "INSERT INTO audit_log (day, actor, action, detail) VALUES (?, ?, ?, ?)", (day, actor, action, detail)
        )

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        sql = "SELECT id, day, actor, action, detail FROM audit_log ORDER BY id DESC"
        rows = self._db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [AuditEntry(*row) for row in rows]

    # ---- issued TANs ---------------------------------------------------------------------------------

    def add_issued_tan(
        self, tan_hash: bytes, officer: str, issued_hour: float, expires: float, report_type: str, note: str
    ) -> int:
        row = self._db.execute(
            "INSERT INTO issued_tans (tan_hash, officer, issued_hour, expires, report_type, note) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (tan_hash, officer, issued_hour, expires, report_type, note),
        ).fetchone()
        return int(row[0])

    def issued_tans(self, limit: int = 200) -> list[IssuedTan]:
        rows = self._db.execute(
            "SELECT id, tan_hash, officer, issued_hour, expires, report_type, note, state FROM issued_tans "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [IssuedTan(r[0], bytes(r[1]), r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def issued_tan(self, tan_id: int) -> IssuedTan | None:
        row = self._db.execute(
            "SELECT id, tan_hash, officer, issued_hour, expires, report_type, note, state FROM issued_tans "
            "WHERE id = ?",
            (tan_id,),
        ).fetchone()
        return None if row is None else IssuedTan(row[0], bytes(row[1]), *row[2:])

    def mark_revoked(self, tan_id: int) -> None:
        self._db.execute("UPDATE issued_tans SET state = 'revoked' WHERE id = ?", (tan_id,))

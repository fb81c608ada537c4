"""The audit log: who logged in (or failed to), issued, revoked, changed an account; append-only.

The table refuses UPDATE and DELETE (triggers in the schema), and nothing here writes a TAN, a token, a
password or anything about the person a TAN was for: an entry names the officer, the action, and the
portal's own number of the issued TAN. An entry keeps the UTC day, not the time (``AuditEntry``), and
entries of one day are told apart by their order. CSV export neutralises cells a spreadsheet would run
as a formula.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from enum import StrEnum

from agent.clock import day_of, day_to_date
from agent.server.portal.store import AuditEntry, PortalStore

CLI_ACTOR = "(command line)"
API_SUFFIX = " (API token)"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Action(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login failed"
    LOGOUT = "logout"
    TAN_ISSUED = "TAN issued"
    TAN_REVOKED = "TAN revoked"
    ENROLMENT_ISSUED = "enrolment codes issued"
    OFFICER_ADDED = "officer added"
    OFFICER_DISABLED = "officer disabled"
    OFFICER_RESET = "officer reset"
    API_TOKEN_CREATED = "API token created"
    AUDIT_EXPORTED = "audit log exported"


class Audit:
    def __init__(self, store: PortalStore) -> None:
        self._store = store

    def record(self, now: float, actor: str, action: Action, detail: str = "") -> None:
        self._store.append_audit(day_of(now), actor, action.value, detail)

    def entries(self, limit: int | None = None) -> list[AuditEntry]:
        return self._store.audit_entries(limit)


def utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_day(day: int) -> str:
    return day_to_date(day).isoformat()


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(entries: Iterable[AuditEntry]) -> str:
    """Oldest first, one row per entry."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "date_utc", "actor", "action", "detail"])
    for e in sorted(entries, key=lambda e: e.id):
        writer.writerow([e.id, utc_day(e.day), _cell(e.actor), _cell(e.action), _cell(e.detail)])
    return out.getvalue()

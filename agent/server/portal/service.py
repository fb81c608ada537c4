"""The portal's actions, shared by its pages, the admin JSON API and the CLI: issue and revoke TANs, issue
enrolment batches, each written to the audit log under the officer who did it."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.clock import Clock, date_to_day, day_of, day_to_date
from agent.schemes import published
from agent.server import codes
from agent.server.config import BackendConfig
from agent.server.db import ServerStore
from agent.server.ebid import issue_enrolment_codes
from agent.server.portal.accounts import Accounts, LoginPolicy
from agent.server.portal.audit import Action, Audit
from agent.server.portal.sessions import COOKIE_KEY_META, Sessions
from agent.server.portal.store import IssuedTan, PortalStore
from agent.server.uploads import issue_tans

log = logging.getLogger(__name__)
COARSE_SECONDS = 3600  # issued TANs are listed to the hour
MAX_NOTE_CHARS = 200


class ReportType(StrEnum):
    """What an officer confirms, by the name the portal shows; ``published`` is the export's number the
    TAN carries to the device and its keys."""

    CONFIRMED_TEST = "confirmed test"
    CLINICAL_DIAGNOSIS = "clinical diagnosis"

    @property
    def published(self) -> published.ReportType:
        if self is ReportType.CLINICAL_DIAGNOSIS:
            return published.ReportType.CONFIRMED_CLINICAL_DIAGNOSIS
        return published.ReportType.CONFIRMED_TEST


class PortalError(ValueError):
    """A refused portal action, with a one-line reason fit for the page."""


@dataclass(frozen=True)
class NewTan:
    id: int
    code: str
    expires: float
    onset: dt.date | None
    report_type: ReportType


@dataclass(frozen=True)
class TanRow:
    id: int
    officer: str
    issued_hour: float
    report_type: str
    note: str
    state: str


def check_onset(onset: dt.date | None, today: dt.date, retention_days: int) -> int | None:
    """The onset's day number; not in the future, not further back than keys are kept."""
    if onset is None:
        return None
    if onset > today:
        raise PortalError("onset: the date is in the future")
    if (today - onset).days > retention_days:
        raise PortalError(f"onset: at most {retention_days} days back (the key retention)")
    return date_to_day(onset)


class Portal:
    def __init__(self, config: BackendConfig, clock: Clock, store: ServerStore, portal_store: PortalStore) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.portal_store = portal_store
        p = config.portal
        self.accounts = Accounts(portal_store, LoginPolicy(p.max_failed_logins, p.lockout_seconds))
        self.cookie_key = store.meta_setdefault(COOKIE_KEY_META, codes.new_token().encode())
        self.sessions = Sessions(portal_store, self.cookie_key, p.session_seconds)
        self.audit = Audit(portal_store)

    def close(self) -> None:
        self.portal_store.close()

    def today(self) -> dt.date:
        return day_to_date(day_of(self.clock.now()))

    def issue_tan(
        self, actor: str, onset: dt.date | None, report_type: ReportType, valid_seconds: int | None, note: str
    ) -> NewTan:
        valid = self.config.tan.valid_seconds if valid_seconds is None else valid_seconds
        if not 60 <= valid <= 30 * 86_400:
            raise PortalError("validity: between 1 minute and 30 days")
        if len(note) > MAX_NOTE_CHARS:
            raise PortalError(f"note: at most {MAX_NOTE_CHARS} characters")
        onset_day = check_onset(onset, self.today(), self.config.lists.retention_days)
        now = self.clock.now()
        [issued] = issue_tans(self.store, now, valid, onset_day, report_type=report_type.published)
        tan_hash = codes.code_hash(codes.normalise_code(issued.code) or "")
        hour = now - now % COARSE_SECONDS
        tan_id = self.portal_store.add_issued_tan(tan_hash, actor, hour, issued.expires, report_type.value, note)
        self.audit.record(now, actor, Action.TAN_ISSUED, f"#{tan_id}, {report_type.value}, valid {valid // 60} min")
        return NewTan(tan_id, issued.code, issued.expires, onset, report_type)

    def tans(self) -> list[TanRow]:
        now = self.clock.now()
        states = self.store.tan_states(now)
        rows = []
        for t in self.portal_store.issued_tans():
            state = t.final_state or states.get(t.tan_hash) or ("expired" if t.expires <= now else "unknown")
            rows.append(TanRow(t.id, t.officer, t.issued_hour, t.report_type, t.note, state))
        return rows

    def revoke_tan(self, actor: str, tan_id: int) -> None:
        found: IssuedTan | None = self.portal_store.issued_tan(tan_id)
        now = self.clock.now()
        if found is None or found.final_state is not None or not self.store.revoke_tan(found.tan_hash, now):
            raise PortalError(f"TAN #{tan_id} is not open (used, expired or revoked already)")
        self.portal_store.mark_revoked(tan_id)
        self.audit.record(now, actor, Action.TAN_REVOKED, f"#{tan_id}")

    def issue_enrolment(self, actor: str, count: int, valid_seconds: int | None) -> tuple[list[str], float]:
        if not 1 <= count <= self.config.portal.enrolment_batch_max:
            raise PortalError(f"count: between 1 and {self.config.portal.enrolment_batch_max}")
        valid = self.config.ebid.enrolment_valid_seconds if valid_seconds is None else valid_seconds
        if not 60 <= valid <= 366 * 86_400:
            raise PortalError("validity: between 1 minute and 366 days")
        now = self.clock.now()
        issued, expires = issue_enrolment_codes(self.store, now, valid, count)
        self.audit.record(now, actor, Action.ENROLMENT_ISSUED, f"{count} code(s), valid {valid // 86_400} d")
        return issued, expires


def open_portal(config: BackendConfig, clock: Clock, store: ServerStore) -> Portal:
    return Portal(config, clock, store, PortalStore(store.database))


def portal_store_of(database: str | Path) -> PortalStore:
    """The portal's tables in the backend's store at ``database`` (a path or URL, for the CLI)."""
    return PortalStore(database)

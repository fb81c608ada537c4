"""The TAN carries the health officer's onset date and report type to the device (issue 13, item 5).

A TAN is issued through the portal with onset day D; the device checks it (spending nothing) before it
asks for consent, publishes exactly the contagious window (D - 2 to today) even when its user named an
earlier onset, and the keys in the published list carry the officer's report type. For EBID only contacts
heard inside the window are submitted. A declined report leaves the TAN open on the backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from support.backend_harness import DAY, T0, RunningBackend, heard
from support.sync_devices import issue, make_device

from agent.cli.sync import _onset_note
from agent.clock import ManualClock, day_to_date
from agent.protocol import wire
from agent.protocol.export_stream import parse_key_chunk
from agent.risk import CONTAGIOUS_DAYS_BEFORE_ONSET, RiskSettings
from agent.schemes.base import SchemeName
from agent.schemes.published import ReportType
from agent.server import codes
from agent.server.portal.service import ReportType as OfficerReportType
from agent.store import OwnKey
from agent.sync import SyncError, reported_onset

TODAY = int(T0) // DAY
ONSET = TODAY - 4


def _officer_tan(running: RunningBackend, onset: int | None, kind: OfficerReportType) -> str:
    onset_date = None if onset is None else day_to_date(onset)
    return running.backend.portal.issue_tan("ann", onset_date, kind, None, "").code


async def test_the_officers_onset_and_report_type_decide_what_is_published(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.GAEN)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.GAEN)
    for day in range(TODAY - 9, TODAY + 1):
        a.store.put_own_key(
            OwnKey(SchemeName.GAEN, "tek", day * DAY, (day + 1) * DAY, os.urandom(16), {"rolling_start": day * 144})
        )
    tan = _officer_tan(running, ONSET, OfficerReportType.CLINICAL_DIAGNOSIS)
    users_onset = ONSET - 3  # the user remembers an earlier onset: the officer's wins
    token = await a.client.exchange_tan(tan)
    assert token.grant == wire.TanGrant(ONSET, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    effective = reported_onset(token.grant, users_onset)
    assert effective == ONSET
    keys = a.client.report_keys(SchemeName.GAEN, effective, clock.now())
    first = ONSET - CONTAGIOUS_DAYS_BEFORE_ONSET
    assert sorted(k.rolling_start_interval_number // 144 for k in keys) == list(range(first, TODAY + 1))
    await a.client.upload(SchemeName.GAEN, token, users_onset, keys)
    await clock.advance(2 * 3600)
    with b.client.spool() as body:
        pull = await b.client.pull(SchemeName.GAEN, body)
        published = [
            k
            for v in pull.lists
            for chunk in v.export.chunks()
            if not chunk.revised
            for k in parse_key_chunk(chunk, v.export.summary)
        ]
    assert sorted(k.rolling_start_interval_number // 144 for k in published) == list(range(first, TODAY))
    assert {k.report_type for k in published} == {ReportType.CONFIRMED_CLINICAL_DIAGNOSIS}
    assert {k.days_since_onset for k in published} == set(range(-CONTAGIOUS_DAYS_BEFORE_ONSET, TODAY - ONSET))
    assert a.store.credential("pending_report") is None  # sent: nothing of the TAN kept


async def test_a_tan_without_onset_leaves_the_users_onset_and_a_declined_report_keeps_the_tan(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.GAEN)
    a.ring.ensure(T0 - DAY)
    tan = _officer_tan(running, None, OfficerReportType.CONFIRMED_TEST)
    token = await a.client.exchange_tan(tan)
    assert token.grant == wire.TanGrant(None, ReportType.CONFIRMED_TEST)
    assert reported_onset(token.grant, ONSET) == ONSET
    # declined at the consent question: the next report with the same TAN uses the same token
    again = await a.client.exchange_tan(tan)
    assert again == token
    await a.client.upload(SchemeName.GAEN, again, ONSET, a.client.report_keys(SchemeName.GAEN, ONSET, clock.now()))
    outcome = await a.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
    assert outcome.problems == ()


async def test_a_declined_report_leaves_its_tan_open_on_the_backend(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Consent comes before the TAN is spent: checking it tells the device the officer's onset and type
    and spends nothing, so after a declined report the same TAN still reports, on this device or another."""
    store = running.backend.store
    for scheme in (SchemeName.GAEN, SchemeName.EBID):
        a = make_device(tmp_path, f"a-{scheme.value}", running.url, running, http, clock, scheme)
        tan = _officer_tan(running, ONSET, OfficerReportType.CLINICAL_DIAGNOSIS)
        tan_hash = codes.code_hash(codes.normalise_code(tan) or "")
        grant = await a.client.check_tan(tan)
        assert grant == wire.TanGrant(ONSET, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
        assert await a.client.check_tan(tan) == grant  # asking again (the question asked again) is the same
        # declined at the consent question: the TAN is open on the backend and nothing of it is kept here
        assert store.tan_states(clock.now())[tan_hash] == "open"
        assert a.store.credential("pending_report") is None
        if scheme is SchemeName.GAEN:
            a.ring.ensure(T0 - DAY)
            await a.client.report(scheme, tan, None, a.client.report_keys(scheme, ONSET, clock.now()))
        else:
            contact = make_device(tmp_path, "contact", running.url, running, http, clock, scheme)
            await contact.client.register(await issue(http, running, "enrolment-codes"))
            a.store.add_windows(heard(contact.ring.scheme(), clock.now() + 60, minutes=10, rssi=-50))
            await clock.advance(3600)
            await a.client.report_ebid(tan, a.client.ebid_contacts(ONSET, clock.now(), 0.0))
        assert store.tan_states(clock.now())[tan_hash] == "used"
        with pytest.raises(SyncError, match="TAN already used"):
            await a.client.check_tan(tan)


def test_the_cli_says_which_onset_it_uses() -> None:
    officer = wire.TanGrant(ONSET, ReportType.CONFIRMED_TEST)
    assert "replaces your --onset" in _onset_note(officer, ONSET - 3)
    assert "replaces" not in _onset_note(officer, ONSET) and "from the health authority" in _onset_note(officer, None)
    assert "whole retention" in _onset_note(wire.TanGrant(), None)
    assert "yours" in _onset_note(wire.TanGrant(), ONSET)


async def test_an_ebid_report_submits_only_contacts_inside_the_officers_window(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    heard_early = make_device(tmp_path, "early", running.url, running, http, clock, SchemeName.EBID)
    heard_late = make_device(tmp_path, "late", running.url, running, http, clock, SchemeName.EBID)
    reporter = make_device(tmp_path, "reporter", running.url, running, http, clock, SchemeName.EBID)
    await heard_early.client.register(await issue(http, running, "enrolment-codes"))
    await heard_late.client.register(await issue(http, running, "enrolment-codes"))
    reporter.store.add_windows(heard(heard_early.ring.scheme(), T0 + 60, minutes=10, rssi=-50))
    await clock.advance(3 * DAY)
    await heard_late.client.fetch_ebids()
    reporter.store.add_windows(heard(heard_late.ring.scheme(), clock.now() + 60, minutes=10, rssi=-50))
    await clock.advance(3600)
    today = int(clock.now()) // DAY
    retained = reporter.client.ebid_contacts(None, clock.now(), 0.0)
    assert len(retained) == 2
    bought = await reporter.client.buy_submission_tokens(
        _officer_tan(running, today, OfficerReportType.CONFIRMED_TEST), 2, ReportType.CONFIRMED_TEST
    )
    assert bought.grant.onset_day == today
    contacts = reporter.client.ebid_contacts(reported_onset(bought.grant, None), clock.now(), 0.0)
    assert len(contacts) == 1  # heard three days ago: before onset - 2, not sent
    await reporter.client.submit(contacts, bought)
    store = running.backend.store
    ids = {
        n: store.registration_by_client(d.store.credential("ebid")["client_id"]).id
        for n, d in (("early", heard_early), ("late", heard_late))
    }  # type: ignore[index,union-attr]
    assert len(store.exposures_of(ids["late"])) == 1
    assert store.exposures_of(ids["early"]) == []

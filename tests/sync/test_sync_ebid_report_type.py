"""The report type a TAN carries reaches the backend's EBID scoring (issue 13, item 5) without linking
anything: the backend blind-signs a TAN's submission tokens with the key of the TAN's own report type (one
key per type, every reporter of a type shares it), and a submission's contact keeps the type of the key its
token verifies under. A backend whose risk model weighs report types (the CWA model) then scores a
self-report's contacts lower than a confirmed test's; a token bought under one type cannot be relabelled."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.backend_calls import access_token, batch_of, buy_tokens, contacts_heard, post, register, registration_id
from support.backend_harness import RunningBackend, backend_config, heard, running_backend
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.protocol import blind_rsa, wire
from agent.schemes.base import SchemeName
from agent.schemes.published import ReportType
from agent.server import codes
from agent.server.db import RedeemedTan
from agent.server.uploads import issue_tans
from agent.sync import submissions

CWA = json.loads((Path(__file__).resolve().parent.parent / "data" / "cwa_risk_cases.json").read_text())["inputs"][
    "defaultRiskCalculationConfiguration"
]


@pytest.fixture
async def cwa_backend(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[RunningBackend]:
    """A backend whose EBID verdicts use the CWA model, which weighs report types (SwissCovid's ignores them)."""
    config = backend_config(tmp_path / "backend", risk={"model": "cwa", "cwa": CWA})
    async with running_backend(config, clock, signing_key) as rb:
        yield rb


def _tan(rb: RunningBackend, clock: ManualClock, report_type: ReportType) -> str:
    """A TAN of ``report_type`` as ``proxitrace backend tan issue --report-type`` makes it."""
    return issue_tans(rb.backend.store, clock.now(), 3600, None, 1, report_type)[0].code


def _score(verdict: wire.RiskVerdict) -> float:
    return max(d["score"] for d in verdict.explanation["days"])  # type: ignore[index,union-attr]


async def test_a_self_reports_contacts_score_lower_than_a_confirmed_tests(
    tmp_path: Path, cwa_backend: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Two people each stood ten minutes at 50 dB next to someone who then reported, one with a confirmed
    test's TAN, one with a self-report's; each report goes the device's whole way (check, keys, tokens,
    separate submissions). The same contact is worth 1.4 x 8 weighted minutes from a confirmed test (at risk)
    and 0.6 x 8 from a self-report (below CWA's threshold of 9)."""
    rb = cwa_backend
    scores: dict[ReportType, float] = {}
    for report_type in (ReportType.CONFIRMED_TEST, ReportType.SELF_REPORT):
        name = report_type.name.lower()
        heard_device = make_device(tmp_path, f"heard-{name}", rb.url, rb, http, clock, SchemeName.EBID)
        reporter = make_device(tmp_path, f"reporter-{name}", rb.url, rb, http, clock, SchemeName.EBID)
        await heard_device.client.register(await issue(http, rb, "enrolment-codes"))
        reporter.store.add_windows(heard(heard_device.ring.scheme(), clock.now() + 60, minutes=10, rssi=-50))
        await clock.advance(3600)
        client_id = heard_device.store.credential("ebid")["client_id"]  # type: ignore[index]
        reg = rb.backend.store.registration_by_client(client_id)
        assert reg is not None
        await reporter.client.report_ebid(
            _tan(rb, clock, report_type), reporter.client.ebid_contacts(None, clock.now(), 0.0)
        )
        assert {e.report_type for e in rb.backend.store.exposures_of(reg.id)} == {report_type}
        verdict = await heard_device.client.ask_risk_verdict()
        scores[report_type] = _score(verdict)
        assert verdict.at_risk is (report_type is ReportType.CONFIRMED_TEST), verdict.explanation
    assert scores == {ReportType.CONFIRMED_TEST: 11.2, ReportType.SELF_REPORT: 4.8}


async def test_a_token_verifies_as_the_type_of_the_tan_that_bought_it_only(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """The backend signs with the TAN's key, never one the client names: a request blinded for another type
    is refused before the TAN is spent; a self-report's token verifies under the self-report key alone, and
    a ``reportType`` slipped into the submission changes nothing (nothing but the key says the type)."""
    creds = await register(http, running)
    batch = await batch_of(http, running, await access_token(http, running, creds))
    await clock.advance(1800)
    contact = contacts_heard(batch, batch.entries[0].period * 900.0, 5, 50)[0]
    tan = _tan(running, clock, ReportType.SELF_REPORT)
    keys = wire.parse_submission_keys(wire.submission_keys_body(running.backend.ebid.submission_public_keys()))
    pending = submissions.new_tokens(keys.key(ReportType.CONFIRMED_TEST), wire.SUBMISSION_TOKEN_BATCH)
    body = wire.token_request_batch_body(tan, [p.blinded.blinded_msg for p in pending], ReportType.CONFIRMED_TEST)
    status, answer = await post(http, f"{running.url}/v1/ebid/submission-tokens", body)
    assert status == 409 and "SELF_REPORT" in answer["error"] and "not spent" in answer["error"]

    [token, *_] = await buy_tokens(http, running, tan, ReportType.SELF_REPORT)  # the same TAN still buys
    assert blind_rsa.verify(keys.key(ReportType.SELF_REPORT), *token)
    assert not any(blind_rsa.verify(keys.key(t), *token) for t in wire.REPORT_TYPES - {ReportType.SELF_REPORT})
    relabelled: dict[str, Any] = json.loads(wire.submission_bytes(wire.Submission(token[0], token[1], contact)))
    relabelled["reportType"] = int(ReportType.CONFIRMED_TEST)
    assert await post(http, f"{running.url}/v1/ebid/submissions", relabelled) == (200, {"status": "accepted"})
    [exposure] = running.backend.store.exposures_of(registration_id(running, creds))
    assert exposure.report_type is ReportType.SELF_REPORT


async def test_every_report_types_request_is_as_long_as_a_dummys(running: RunningBackend) -> None:
    """Dummy traffic always blinds as a confirmed test; that hides nothing less, since the keys share one
    modulus length and a token request, its answer and a submission are padded alike whatever the type."""
    keys = running.backend.ebid.submission_public_keys()
    assert {k.key_size for k in keys.by_type.values()} == {2048}
    blinded = [os.urandom(256)] * wire.SUBMISSION_TOKEN_BATCH
    lengths = {len(wire.token_request_batch_bytes("ABCD-EFGH-JKMN", blinded, t)) for t in wire.REPORT_TYPES}
    lengths.add(len(wire.token_request_batch_bytes(None, blinded, ReportType.CONFIRMED_TEST)))
    answers = {len(wire.blind_signatures_bytes(blinded, wire.TanGrant(19_000, t))) for t in wire.REPORT_TYPES}
    answers.add(len(wire.blind_signatures_bytes(blinded, wire.TanGrant())))
    assert len(lengths) == 1 and len(answers) == 1


def _keys_body(running: RunningBackend) -> dict[str, Any]:
    return wire.submission_keys_body(running.backend.ebid.submission_public_keys())


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        (lambda b: b["keys"].pop(), r"^body\.keys: expected one key for each report type \[1, 2, 3\]$"),
        (lambda b: b["keys"].append(b["keys"][0]), r"^body\.keys\[3\]\.reportType: 1 .* listed twice$"),
        (lambda b: b["keys"][0].update(reportType=4), r"^body\.keys\[0\]\.reportType: 4 is not a diagnosis"),
        (lambda b: b.update(variant="other"), r"^body\.variant: expected RSABSSA"),
    ],
)
async def test_a_bad_key_list_is_refused_in_one_line(running: RunningBackend, spoil: Any, error: str) -> None:
    body = _keys_body(running)
    spoil(body)
    with pytest.raises(wire.WireError, match=error):
        wire.parse_submission_keys(body)


async def test_keys_of_different_lengths_are_refused(running: RunningBackend) -> None:
    """A backend (or whoever forged its answer) whose keys differ in size would make a request's length tell
    its report type."""
    body = _keys_body(running)
    longer = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
    body["keys"][2].update(n=wire.b64(longer.public_numbers().n.to_bytes(384, "big")))
    with pytest.raises(wire.WireError, match=r"^body\.keys: the keys' moduli differ in length"):
        wire.parse_submission_keys(body)


async def test_a_token_request_for_no_diagnosis_report_type_is_a_400(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    tan = _tan(running, clock, ReportType.CONFIRMED_TEST)
    body = {**wire.token_request_batch_body(tan, [os.urandom(256)] * wire.SUBMISSION_TOKEN_BATCH), "reportType": 5}
    status, answer = await post(http, f"{running.url}/v1/ebid/submission-tokens", body)
    assert status == 400 and answer["error"] == "body.reportType: 5 is not a diagnosis report type"
    tan_hash = codes.code_hash(codes.normalise_code(tan) or "")
    assert running.backend.store.peek_tan(tan_hash, clock.now()) == RedeemedTan(None, 1)  # still open

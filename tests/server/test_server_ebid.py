"""EBID mode against the real server: registration (proof of work + enrolment code), access
tokens, EBID batches, reports as separate submissions under blind-signed tokens, status with its daily
limit and erasure."""

import os
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_calls import (
    PERIOD,
    access_token,
    admin_tan,
    batch_of,
    buy_tokens,
    contacts_heard,
    enrolment_codes,
    file_report,
    post,
    register,
    registration_id,
    submit,
)
from support.backend_harness import DAY, T0, RunningBackend, backend_config, running_backend

from agent.clock import ManualClock
from agent.protocol import answers, blind_rsa, proof_of_work, wire
from agent.schemes import ebid
from agent.schemes.published import ReportType
from agent.server.app import FEDERATION_KEY_META
from agent.sync import submissions


async def test_registration_and_batch(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    creds = await register(http, running)
    assert creds["countryCode"] == 1 and creds["periodSeconds"] == PERIOD
    batch = await batch_of(http, running, await access_token(http, running, creds), periods=8)
    first = ebid.period_of(T0, PERIOD)
    assert [e.period for e in batch.entries] == list(range(first, first + 8))
    store = running.backend.store
    puid = store.registration_by_client(creds["clientId"]).puid  # type: ignore[union-attr]
    bks = store.existing_broadcast_keys(range(first, first + 8))
    kg = store.meta(FEDERATION_KEY_META)
    assert kg is not None
    for e in batch.entries:
        assert ebid.puid_of(bks[e.period], e.ebid) == puid  # EBID = AES-128(BK_t, PUID)
        assert ebid.country_of(kg, e.ebid, e.ecc) == 1
    assert len({e.ebid for e in batch.entries}) == 8


async def test_batch_needs_a_token_and_sane_sizes(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    token = await access_token(http, running, await register(http, running))
    for query, status in (("", 200), ("?periods=0", 400), ("?periods=193", 400), ("?periods=x", 400)):
        async with http.get(f"{running.url}/v1/ebid/ebids{query}", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == status, query
    async with http.get(f"{running.url}/v1/ebid/ebids") as r:
        assert r.status == 401
    async with http.get(f"{running.url}/v1/ebid/ebids", headers={"Authorization": "Bearer forged"}) as r:
        assert r.status == 401 and (await r.json())["error"] == "access token unknown or expired"


async def test_registration_refusals_spend_nothing(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    code, spare = await enrolment_codes(http, running, 2)
    _, ch = await post(http, f"{running.url}/v1/ebid/challenge")
    challenge = wire.unb64(ch["challenge"], "c")
    wrong = next(n for n in range(1000) if not proof_of_work.meets(challenge, n, 8))
    url = f"{running.url}/v1/ebid/register"
    good = proof_of_work.solve(challenge, 8)
    assert await post(http, url, {"challenge": ch["challenge"], "nonce": wrong, "enrolmentCode": code}) == (
        403,
        {"error": "proof of work does not reach 8 leading zero bits"},
    )
    assert (await post(http, url, {"challenge": "%%", "nonce": good, "enrolmentCode": code}))[0] == 400
    assert (await post(http, url, {"challenge": ch["challenge"], "enrolmentCode": code}))[1] == {
        "error": "body.nonce: expected an integer"
    }
    assert await post(http, url, {"challenge": ch["challenge"], "nonce": good, "enrolmentCode": "ZZZZ-ZZZZ-ZZZZ"}) == (
        403,
        {"error": "enrolment code unknown"},
    )
    status, _ = await post(http, url, {"challenge": ch["challenge"], "nonce": good, "enrolmentCode": code})
    assert status == 201  # challenge and code were still unspent
    assert (await post(http, url, {"challenge": ch["challenge"], "nonce": good, "enrolmentCode": spare}))[0] == 403
    creds = await register(http, running, spare)
    assert creds["clientId"]
    _, ch2 = await post(http, f"{running.url}/v1/ebid/challenge")
    nonce2 = proof_of_work.solve(wire.unb64(ch2["challenge"], "c"), 8)
    assert await post(http, url, {"challenge": ch2["challenge"], "nonce": nonce2, "enrolmentCode": spare}) == (
        403,
        {"error": "enrolment code already used"},
    )
    await clock.advance(601)
    status, answer = await post(http, url, {"challenge": ch2["challenge"], "nonce": nonce2, "enrolmentCode": spare})
    assert status == 403 and "challenge unknown, used or expired" in answer["error"]


async def test_wrong_enrolment_codes_are_rate_limited(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    _, ch = await post(http, f"{running.url}/v1/ebid/challenge")
    nonce = proof_of_work.solve(wire.unb64(ch["challenge"], "c"), 8)
    body = {"challenge": ch["challenge"], "nonce": nonce, "enrolmentCode": "0000-0000-0000"}
    for _ in range(3):
        assert (await post(http, f"{running.url}/v1/ebid/register", body))[0] == 403
    status, answer = await post(http, f"{running.url}/v1/ebid/register", body)
    assert status == 429 and "too many wrong enrolment codes" in answer["error"]


async def test_wrong_secret(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    creds = await register(http, running)
    status, answer = await post(
        http, f"{running.url}/v1/ebid/token", {"clientId": creds["clientId"], "clientSecret": "guess"}
    )
    assert status == 401 and "wrong secret" in answer["error"]


async def test_report_makes_the_contact_at_risk_and_erases_it(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    token = await access_token(http, running, creds)
    batch = await batch_of(http, running, token)
    contacts = contacts_heard(batch, T0, minutes=20, attenuation=50)  # 20 close minutes over two periods
    assert len(contacts) == 2
    await clock.advance(3600)
    assert await file_report(http, running, contacts) == (200, {"status": "accepted"})
    token = await access_token(http, running, creds)  # the first one expired meanwhile (15 min)
    status, answer = await post(http, f"{running.url}/v1/ebid/status", None, token)
    assert status == 200
    assert answer["atRisk"] is True and answer["mustRegisterAgain"] is True
    assert answer["explanation"]["notify"] is True
    day = answer["explanation"]["days"][0]
    assert day["crossed"] is True and day["score"] == 20  # 20 minutes below 55 dB, weight 1.0
    # the pseudonym is gone: token, credentials and exposures
    assert (await post(http, f"{running.url}/v1/ebid/status", None, token))[0] == 401
    again = {"clientId": creds["clientId"], "clientSecret": creds["clientSecret"]}
    assert (await post(http, f"{running.url}/v1/ebid/token", again))[0] == 401
    assert running.backend.store.registration_by_client(creds["clientId"]) is None


async def test_far_or_short_contacts_are_not_at_risk(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    batch = await batch_of(http, running, await access_token(http, running, creds))
    far = contacts_heard(batch, T0, minutes=30, attenuation=70)
    await clock.advance(1800)
    assert (await file_report(http, running, far))[0] == 200
    token = await access_token(http, running, creds)
    status, answer = await post(http, f"{running.url}/v1/ebid/status", None, token)
    assert (status, answer["atRisk"], answer["mustRegisterAgain"]) == (200, False, False)
    assert (await post(http, f"{running.url}/v1/ebid/status", None, token))[0] == 200  # still registered


async def test_status_polls_are_limited_per_day(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "b", ebid={"status_polls_per_day": 2})
    async with running_backend(config, clock, signing_key) as rb:
        creds = await register(http, rb)
        token = await access_token(http, rb, creds)
        assert [(await post(http, f"{rb.url}/v1/ebid/status", None, token))[1]["pollsLeftToday"] for _ in range(2)] == [
            1,
            0,
        ]
        async with http.post(f"{rb.url}/v1/ebid/status", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 429
            midnight = (int(T0) // DAY + 1) * DAY
            assert int(r.headers["Retry-After"]) == midnight - int(T0)
        await clock.advance(midnight - T0)
        status, answer = await post(http, f"{rb.url}/v1/ebid/status", None, await access_token(http, rb, creds))
        assert (status, answer["pollsLeftToday"]) == (200, 1)


async def test_submissions_outside_the_period_are_refused(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    batch = await batch_of(http, running, await access_token(http, running, creds))
    good = contacts_heard(batch, T0, minutes=5, attenuation=50)[0]
    replayed = wire.ReportedContact(good.ecc, good.ebid, good.period, good.time + 2 * PERIOD, good.scans)
    relayed_scan = wire.ReportedContact(
        good.ecc, good.ebid, good.period, good.time, (*good.scans, wire.ScanRecord(good.time - 2 * PERIOD, 50, 45))
    )
    wrong_period = wire.ReportedContact(good.ecc, good.ebid, good.period + 8, good.time, good.scans)
    await clock.advance(1200)
    token = (await buy_tokens(http, running, await admin_tan(http, running)))[0]
    for bad in (replayed, relayed_scan, wrong_period):
        status, got = await submit(http, running, token, bad)
        assert status == 400 and "received outside its EBID's period ± 1" in got["error"]
    later = (good.period + 8) * PERIOD + 1
    future_in_period = wire.ReportedContact(
        good.ecc, good.ebid, good.period + 8, later, (wire.ScanRecord(later, 50, 45),)
    )
    status, got = await submit(http, running, token, future_in_period)
    assert status == 400 and "received in the future" in got["error"]
    ahead = clock.now() + answers.CLOCK_TOLERANCE_SECONDS + 60  # inside the current period ± 1, but after now
    now_period = int(clock.now()) // PERIOD
    future = wire.ReportedContact(good.ecc, good.ebid, now_period, ahead, (wire.ScanRecord(ahead, 50, 45),))
    status, got = await submit(http, running, token, future)
    assert status == 400 and "received in the future" in got["error"]
    url = f"{running.url}/v1/ebid/submissions"
    assert (await post(http, url, b"["))[0] == 400
    assert (await post(http, url, {"token": "AA==", "signature": "AA==", "contact": None}))[0] == 400
    rid = registration_id(running, creds)
    assert running.backend.store.exposures_of(rid) == []
    assert (await submit(http, running, token, good))[0] == 200  # the token survived the refusals
    assert len(running.backend.store.exposures_of(rid)) == 1
    status, got = await submit(http, running, token, good)
    assert status == 401 and "already used" in got["error"]  # spent once, then never again


async def test_a_forged_or_spent_token_buys_nothing(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    batch = await batch_of(http, running, await access_token(http, running, creds))
    contact = contacts_heard(batch, T0, minutes=5, attenuation=50)[0]
    await clock.advance(600)
    token, signature = (await buy_tokens(http, running, await admin_tan(http, running)))[0]
    forged = (token[:-1] + bytes([token[-1] ^ 1]), signature)
    status, got = await submit(http, running, forged, contact)
    assert status == 401 and "invalid signature" in got["error"]
    tan = await admin_tan(http, running)
    await buy_tokens(http, running, tan)
    body = wire.token_request_batch_body(tan, [os.urandom(256)] * wire.SUBMISSION_TOKEN_BATCH)
    status, got = await post(http, f"{running.url}/v1/ebid/submission-tokens", body)
    assert status == 403 and "already used" in got["error"]
    for count in (1, wire.SUBMISSION_TOKEN_BATCH + 1):
        body = wire.token_request_batch_body(await admin_tan(http, running), [os.urandom(256)] * count)
        status, got = await post(http, f"{running.url}/v1/ebid/submission-tokens", body)
        assert status == 400 and "a multiple of" in got["error"]
    assert running.backend.store.exposures_of(registration_id(running, creds)) == []


async def test_unknown_ebids_are_accepted_and_forgotten(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    stranger = wire.ReportedContact(1, os.urandom(16), ebid.period_of(T0, PERIOD), T0, (wire.ScanRecord(T0, 50, 45),))
    await clock.advance(60)
    assert (await file_report(http, running, [stranger]))[0] == 200


async def test_oversized_submission(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{running.url}/v1/ebid/submissions",
        data=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 413 and "body larger than" in (await r.json())["error"]


async def test_fake_token_requests_and_dummy_submissions_store_nothing(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    await batch_of(http, running, await access_token(http, running, creds))
    await clock.advance(1800)
    key = running.backend.ebid.submission_public_keys().key(ReportType.CONFIRMED_TEST)
    pending = submissions.new_tokens(key, wire.SUBMISSION_TOKEN_BATCH)
    body = wire.token_request_batch_body(None, [p.blinded.blinded_msg for p in pending])
    status, answer = await post(http, f"{running.url}/v1/ebid/submission-tokens", body)
    assert status == 200  # a fake request is answered alike, but with nothing that unblinds to a token
    signatures = wire.parse_blind_signatures(answer, len(pending), blind_rsa.modulus_len(key)).blind_signatures
    with pytest.raises(blind_rsa.BlindSignatureError):
        submissions.finalize_tokens(key, pending, signatures)
    dummy = submissions.dummy_submission(blind_rsa.modulus_len(key))
    assert len(dummy) == wire.SUBMISSION_BODY_BYTES
    assert await post(http, f"{running.url}/v1/ebid/submissions", dummy) == (200, {"status": "accepted"})
    store = running.backend.store
    assert store.exposures_of(registration_id(running, creds)) == []
    assert store._db.execute("SELECT COUNT(*) FROM spent_submission_tokens").fetchone()[0] == 0


async def test_retention_forgets_broadcast_keys_and_exposures(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    batch = await batch_of(http, running, await access_token(http, running, creds))
    await clock.advance(1800)
    assert (await file_report(http, running, contacts_heard(batch, T0, minutes=3, attenuation=70)))[0] == 200
    store = running.backend.store
    reg = store.registration_by_client(creds["clientId"])
    assert reg is not None and len(store.exposures_of(reg.id)) == 1
    periods = [e.period for e in batch.entries]
    assert len(store.existing_broadcast_keys(periods)) == len(periods)
    await clock.advance(14 * DAY + PERIOD * 10)
    running.backend.maintain()
    assert store.exposures_of(reg.id) == []
    assert store.existing_broadcast_keys(periods) == {}  # old EBIDs can no longer be mapped to anyone


async def test_registrations_heard_from_within_retention_are_kept(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    creds = await register(http, running)
    store = running.backend.store
    for _ in range(3):
        await clock.advance(7 * DAY)
        await access_token(http, running, creds)  # the device's token request is what "heard from" means
        running.backend.maintain()
    assert store.registration_by_client(creds["clientId"]) is not None
    await clock.advance(15 * DAY)
    running.backend.maintain()
    assert store.registration_by_client(creds["clientId"]) is None
    status, _ = await post(
        http, f"{running.url}/v1/ebid/token", {"clientId": creds["clientId"], "clientSecret": creds["clientSecret"]}
    )
    assert status == 401


async def test_challenges_are_limited_per_client_and_in_rows(
    tmp_path: Path, http: aiohttp.ClientSession, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    config = backend_config(
        tmp_path / "b",
        server={"trust_forwarded_for": True},
        ebid={"challenges_per_client_per_hour": 3, "max_open_challenges": 5, "challenge_ttl_seconds": 600},
    )
    async with running_backend(config, clock, signing_key) as rb:

        async def ask(client: str) -> int:
            async with http.post(f"{rb.url}/v1/ebid/challenge", headers={"X-Forwarded-For": client}) as r:
                return r.status

        def rows() -> int:
            return rb.backend.store._one("SELECT COUNT(*) FROM challenges")[0]

        assert [await ask("10.0.0.1") for _ in range(4)] == [200, 200, 200, 429]
        assert [await ask("10.0.0.2") for _ in range(3)] == [200, 200, 503]  # the table is full at 5
        assert rows() == 5
        await clock.advance(601)  # all expired: dropped before the next one is kept
        assert await ask("10.0.0.3") == 200 and rows() == 1
        await clock.advance(3600)
        assert await ask("10.0.0.1") == 200  # its hour is over

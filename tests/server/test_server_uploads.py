"""TANs, upload tokens and key uploads against the real server on 127.0.0.1: the good path, and every
bad input answered with a clear HTTP error that changes nothing."""

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_calls import admin_tan, exchange, upload
from support.backend_harness import DAY, KEYS_PER_UPLOAD, T0, RunningBackend, backend_config, running_backend

from agent.clock import ManualClock, date_to_day
from agent.protocol import wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType
from agent.server import codes
from agent.server.database import Engine
from agent.server.db import ServerStore

TODAY = gaen.day_start_enin(gaen.enin(T0))


def gaen_keys(*days_back: int) -> list[PublishedKey]:
    return [PublishedKey(os.urandom(16), TODAY - d * 144, transmission_risk_level=3) for d in days_back]


def body_of(keys: list[PublishedKey], scheme: SchemeName = SchemeName.GAEN) -> dict[str, Any]:
    return wire.key_upload_body(scheme, keys, KEYS_PER_UPLOAD, onset_day=None)


async def test_tan_to_token_to_upload(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    tan = await admin_tan(http, running, onset="2025-11-21")
    status, answer = await exchange(http, running, tan.lower().replace("-", " "))  # typing is forgiving
    # at least the 10 min asked for, to the end of the UTC day: the exchange's moment is not stored
    assert status == 200 and answer["expiresAt"] == (T0 // DAY + 1) * DAY
    status, _ = await upload(http, running, answer["token"], body_of(gaen_keys(1, 2, 3)))
    assert status == 200
    store = running.backend.store
    assert store.count_keys(SchemeName.GAEN) == 3  # the 7 fake keys were dropped
    stored = store.released_keys(SchemeName.GAEN, 0, 2**62)
    assert {k.days_since_onset for k in stored} == {2, 1, 0}  # from the TAN's onset date (Nov 21)
    assert {k.report_type for k in stored} == {1}


async def test_tan_works_once_and_expires(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    tan = await admin_tan(http, running)
    assert (await exchange(http, running, tan))[0] == 200
    assert await exchange(http, running, tan) == (403, {"error": "TAN already used"})
    late = await admin_tan(http, running, validSeconds=3600)
    await clock.advance(3601)
    assert await exchange(http, running, late) == (403, {"error": "TAN expired"})


async def test_guessed_tans_are_rate_limited_per_address(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    good = await admin_tan(http, running)
    for _ in range(3):  # tan.max_failures_per_hour = 3 in the harness
        assert await exchange(http, running, "AAAA-BBBB-CCCC") == (403, {"error": "TAN unknown"})
    async with http.post(f"{running.url}/v1/onset", json={"tan": good}) as r:
        assert r.status == 429
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        assert "too many wrong TANs" in (await r.json())["error"]
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0


async def check(http: aiohttp.ClientSession, rb: RunningBackend, body: object) -> tuple[int, bytes]:
    async with http.post(f"{rb.url}{wire.TAN_CHECK_PATH}", json=body) as r:
        return r.status, await r.read()


async def test_a_tan_check_tells_its_onset_and_type_and_spends_nothing(
    running: RunningBackend, http: aiohttp.ClientSession
) -> None:
    tan = await admin_tan(http, running, onset="2025-11-21", reportType="clinical diagnosis")
    status, raw = await check(http, running, {"tan": tan})
    onset = date_to_day(dt.date(2025, 11, 21))
    assert status == 200
    assert wire.parse_tan_check(json.loads(raw)) == wire.TanGrant(onset, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    assert (await check(http, running, {"tan": tan}))[0] == 200  # still open: checking again works
    fake_status, fake = await check(http, running, {"fake": True})
    assert fake_status == 200 and len(fake) == len(raw)  # a dummy check is as long as a real one
    status, answer = await exchange(http, running, tan)  # the report the person agreed to spends it
    assert status == 200 and answer["reportType"] == int(ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    status, raw = await check(http, running, {"tan": tan})
    assert (status, json.loads(raw)) == (403, {"error": "TAN already used"})
    for _ in range(2):  # with the used one, three wrong TANs from this address: then 429, as at the exchange
        assert (await check(http, running, {"tan": "AAAA-BBBB-CCCC"}))[0] == 403
    assert (await exchange(http, running, await admin_tan(http, running)))[0] == 429


async def test_limit_lifts_after_the_window(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    good = await admin_tan(http, running, validSeconds=7200)
    for _ in range(3):
        await exchange(http, running, "not a tan")
    assert (await exchange(http, running, good))[0] == 429
    await clock.advance(3601)
    assert (await exchange(http, running, good))[0] == 200


async def test_bad_uploads_change_nothing_and_keep_the_token(
    running: RunningBackend, http: aiohttp.ClientSession
) -> None:
    _, answer = await exchange(http, running, await admin_tan(http, running))
    token = answer["token"]
    future = PublishedKey(os.urandom(16), gaen.enin(T0) + 1)
    ancient = PublishedKey(os.urandom(16), TODAY - 15 * 144)
    big = body_of(gaen_keys(1))
    big["keys"].append(big["keys"][0])
    cases: list[tuple[object, int, str]] = [
        (b"{not json", 400, "body: not valid JSON"),
        ({"keys": "nope"}, 400, "body.keys: expected a list"),
        (big, 400, f"too many keys ({KEYS_PER_UPLOAD + 1}, the maximum is {KEYS_PER_UPLOAD})"),
        (body_of([future]), 400, "a key for the future"),
        (body_of([ancient]), 400, "older than the 14-day retention"),
        (body_of([PublishedKey(os.urandom(32), TODAY)], SchemeName.DP3T), 400, "expected 16 bytes, got 32"),
        (b"x" * 70_000, 413, "body larger than 65536 bytes"),
    ]
    for body, status, message in cases:
        got_status, got = await upload(http, running, token, body)
        assert got_status == status, (message, got)
        assert message in got["error"]
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0
    assert (await upload(http, running, token, body_of(gaen_keys(1))))[0] == 200  # the token still works
    assert running.backend.store.count_keys(SchemeName.GAEN) == 1


async def test_tokens_bad_used_or_expired(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    body = body_of(gaen_keys(1))
    assert await upload(http, running, "forged", body) == (401, {"error": "upload token unknown"})
    async with http.post(f"{running.url}/v2/gaen/exposed", json=body) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    _, answer = await exchange(http, running, await admin_tan(http, running))
    assert (await upload(http, running, answer["token"], body))[0] == 200
    assert await upload(http, running, answer["token"], body_of(gaen_keys(2))) == (
        401,
        {"error": "upload token already used"},
    )
    _, late = await exchange(http, running, await admin_tan(http, running))
    await clock.advance(late["expiresAt"] - clock.now())
    assert await upload(http, running, late["token"], body) == (401, {"error": "upload token expired"})
    assert running.backend.store.count_keys(SchemeName.GAEN) == 1


async def test_fake_reports_look_real_and_store_nothing(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{running.url}/v1/onset", json={"fake": True}) as r:
        assert r.status == 200
        token = (await r.json())["token"]
    assert await upload(http, running, token, body_of(gaen_keys(1, 2))) == (200, {"status": "accepted"})
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0


async def test_fake_upload_tokens_are_not_stored(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    """Anyone may ask for fake tokens (dummy traffic needs no TAN), so none may cost a row."""
    tokens = []
    for _ in range(20):
        async with http.post(f"{running.url}/v1/onset", json={"fake": True}) as r:
            tokens.append((await r.json())["token"])
    assert running.backend.store._one("SELECT COUNT(*) FROM upload_tokens")[0] == 0
    assert len(set(tokens)) == 20 and {len(t) for t in tokens} == {len(codes.new_token())}
    assert (await upload(http, running, tokens[0], body_of(gaen_keys(1, 2))))[0] == 200
    forged = tokens[1][:-2] + ("AA" if tokens[1][-2:] != "AA" else "AB")
    assert (await upload(http, running, forged, body_of(gaen_keys(1, 2))))[0] == 401


async def test_dp3t_upload(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    _, answer = await exchange(http, running, await admin_tan(http, running))
    sk = PublishedKey(os.urandom(32), TODAY - 3 * 144)
    assert (await upload(http, running, answer["token"], body_of([sk], SchemeName.DP3T), "dp3t"))[0] == 200
    assert running.backend.store.released_keys(SchemeName.DP3T, 0, 2**62)[0].key_data == sk.key_data
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0


async def test_admin_endpoint_needs_the_token(
    running: RunningBackend,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    clock: ManualClock,
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    async with http.post(f"{running.url}/v1/admin/tans", headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401 and (await r.json()) == {"error": "wrong admin token"}
    config = backend_config(tmp_path / "noadmin", server={"admin_token": ""})
    async with running_backend(config, clock, signing_key) as other, http.post(f"{other.url}/v1/admin/tans") as r:
        assert r.status == 404 and "admin API disabled" in (await r.json())["error"]


async def test_responses_are_padded_in_time(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "padded", upload={"min_response_seconds": 0.3})
    async with running_backend(config, clock, signing_key) as rb:
        loop = asyncio.get_running_loop()
        for tan in ("WRONG", await admin_tan(http, rb)):
            start = loop.time()
            await exchange(http, rb, tan)
            assert loop.time() - start >= 0.3
        start = loop.time()
        async with http.get(f"{rb.url}/v1/health") as r:  # not padded
            assert r.status == 200
        assert loop.time() - start < 0.3


async def test_unknown_routes_and_methods_answer_json(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{running.url}/v2/robert/exposed") as r:
        assert r.status == 404 and "error" in await r.json()
    async with http.delete(f"{running.url}/v1/onset") as r:
        assert r.status == 405 and "error" in await r.json()


async def test_forwarded_addresses_when_behind_a_proxy(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    """Behind a reverse proxy every request comes from the proxy; X-Forwarded-For tells clients apart."""
    config = backend_config(tmp_path / "proxied", server={"trust_forwarded_for": True})
    async with running_backend(config, clock, signing_key) as rb:
        for _ in range(3):
            async with http.post(
                f"{rb.url}/v1/onset", json={"tan": "WRONG"}, headers={"X-Forwarded-For": "192.0.2.7, 10.0.0.1"}
            ) as r:
                assert r.status == 403
        async with http.post(
            f"{rb.url}/v1/onset", json={"tan": "WRONG"}, headers={"X-Forwarded-For": "192.0.2.7"}
        ) as r:
            assert r.status == 429
        good = await admin_tan(http, rb)
        async with http.post(f"{rb.url}/v1/onset", json={"tan": good}, headers={"X-Forwarded-For": "192.0.2.8"}) as r:
            assert r.status == 200  # another client behind the same proxy is not blocked


def test_a_store_from_a_newer_backend_is_refused(tmp_path: Path) -> None:
    target = backend_config(tmp_path).database
    store = ServerStore(target)
    if store.database.engine is Engine.SQLITE:
        store.database.execute("PRAGMA user_version=99")
    else:
        store.database.execute("UPDATE schema_version SET version = 99")
    store.close()
    with pytest.raises(RuntimeError, match="store schema 99 is newer than this backend"):
        ServerStore(target)

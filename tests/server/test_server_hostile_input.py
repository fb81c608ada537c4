"""The backend against hostile requests, each one anyone can send without a credential: every parser error
is a 400 (never a 500), JSON endpoints take only ``application/json``, and wrong admin tokens run out."""

import json
import os

import aiohttp
import pytest
from support.backend_calls import admin_tan, exchange
from support.backend_harness import ADMIN_TOKEN, KEYS_PER_UPLOAD, T0, RunningBackend

from agent.clock import ManualClock
from agent.protocol import wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey

JSON = {"Content-Type": "application/json"}
HOSTILE_BODIES = [
    (b"[" * 30_000 + b"]" * 30_000, "body: JSON nested too deeply"),
    (b'{"tan": ' + b"9" * 5000 + b"}", "body: a number too long to read"),
    (b'{"tan": "\xff"}', "body: not UTF-8"),
]
JSON_ENDPOINTS = [
    "/v1/onset",
    "/v2/gaen/exposed",
    "/v1/ebid/register",
    "/v1/ebid/token",
    "/v1/ebid/submission-tokens",
    "/v1/ebid/submissions",
]


@pytest.mark.parametrize(("body", "message"), HOSTILE_BODIES)
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_a_body_json_cannot_read_is_a_400(
    running: RunningBackend, http: aiohttp.ClientSession, path: str, body: bytes, message: str
) -> None:
    headers = {**JSON}
    if path == "/v2/gaen/exposed":
        _, answer = await exchange(http, running, await admin_tan(http, running))
        headers["Authorization"] = f"Bearer {answer['token']}"
    async with http.post(running.url + path, data=body, headers=headers) as r:
        assert (r.status, await r.json()) == (400, {"error": message})


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_json_endpoints_refuse_another_content_type(
    running: RunningBackend, http: aiohttp.ClientSession, content_type: str | None
) -> None:
    _, answer = await exchange(http, running, await admin_tan(http, running))
    keys = [PublishedKey(os.urandom(16), gaen.day_start_enin(gaen.enin(T0)) - 144)]
    body = wire.key_upload_body(SchemeName.GAEN, keys, KEYS_PER_UPLOAD, onset_day=None)
    auth = {"Authorization": f"Bearer {answer['token']}"}
    headers = {**auth, "Content-Type": content_type} if content_type else auth
    url = f"{running.url}/v2/gaen/exposed"
    async with http.post(
        url,
        data=json.dumps(body).encode(),
        headers=headers,
        skip_auto_headers=["Content-Type"],
    ) as r:
        assert (r.status, await r.json()) == (415, {"error": "Content-Type: expected application/json"})
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0
    async with http.post(url, json=body, headers=auth) as r:
        assert r.status == 200  # the same upload, labelled as JSON, is taken: the token was not spent
    assert running.backend.store.count_keys(SchemeName.GAEN) > 0


@pytest.mark.parametrize("value", ["²", "١٢", "\uff11\uff12", "-1", "1e3", "9" * 17])
async def test_a_query_integer_is_ascii_digits_or_a_400(
    running: RunningBackend, http: aiohttp.ClientSession, value: str
) -> None:
    async with http.get(f"{running.url}/v2/gaen/exposed", params={"lastKeyBundleTag": value}) as r:
        assert r.status == 400 and "lastKeyBundleTag: expected a non-negative integer" in (await r.json())["error"]
    async with http.get(
        f"{running.url}/v1/ebid/ebids", params={"periods": value}, headers={"Authorization": "Bearer x"}
    ) as r:
        assert r.status in {400, 401}  # a bad token may be refused first; never a 500


async def test_wrong_admin_tokens_are_rate_limited(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    limit = running.backend.config.tan.max_failures_per_hour
    url = f"{running.url}/v1/admin/tans"
    for _ in range(limit):
        async with http.post(url, json={}, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("/v1/admin/tans", "/v1/admin/enrolment-codes"):
        async with http.post(running.url + path, json={}, headers=right) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) > 0  # even the right one, from this address
    await clock.advance(3601)
    async with http.post(url, json={}, headers=right) as r:
        assert r.status == 201

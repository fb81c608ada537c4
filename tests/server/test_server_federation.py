"""Two federated backends on 127.0.0.1: a contact registered at A is found at risk through a report filed
at B; forwards survive A being down; the backend-to-backend endpoint refuses what is not signed."""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_calls import (
    access_token,
    admin_tan,
    batch_of,
    buy_tokens,
    contacts_heard,
    file_report,
    post,
    register,
    submit,
)
from support.backend_harness import T0, RunningBackend, backend_config, running_backend

from agent.clock import ManualClock
from agent.protocol import wire
from agent.schemes import ebid
from agent.schemes.published import ReportType
from agent.server.config import BackendConfig
from agent.server.federation import FORWARD_PATH, forward_body, signed_headers

K_G = "00112233445566778899aabbccddeeff"
SECRET = "shared-secret-a-b-0123"


def pair_configs(tmp_path: Path, port_a: int, port_b: int) -> tuple[BackendConfig, BackendConfig]:
    def one(name: str, cc: int, peer_cc: int, peer_port: int) -> BackendConfig:
        peer = {"country_code": peer_cc, "url": f"http://127.0.0.1:{peer_port}", "secret": SECRET}
        return backend_config(
            tmp_path / name,
            server={"country_code": cc},
            federation={"key": K_G, "peers": [peer], "retry_seconds": 30.0},
        )

    return one("a", 1, 2, port_b), one("b", 2, 1, port_a)


async def outbox_drained(rb: RunningBackend) -> None:
    for _ in range(500):
        if rb.backend.store.next_forward_time() is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the forward never left the outbox")


@pytest.fixture
async def pair(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[tuple[RunningBackend, RunningBackend]]:
    port_a, port_b = unused_port(), unused_port()
    config_a, config_b = pair_configs(tmp_path, port_a, port_b)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_backend(config_a, clock, signing_key, port_a))
        b = await stack.enter_async_context(running_backend(config_b, clock, signing_key, port_b))
        yield a, b


async def test_contact_registered_at_a_is_found_through_a_report_at_b(
    pair: tuple[RunningBackend, RunningBackend], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a, b = pair
    creds = await register(http, a)
    batch = await batch_of(http, a, await access_token(http, a, creds))
    assert {ebid.country_of(bytes.fromhex(K_G), e.ebid, e.ecc) for e in batch.entries} == {1}
    await clock.advance(1800)
    assert (await file_report(http, b, contacts_heard(batch, T0, minutes=20, attenuation=50)))[0] == 200
    await outbox_drained(b)
    assert b.backend.store.registration_by_client(creds["clientId"]) is None  # B never knew the device
    status, answer = await post(http, f"{a.url}/v1/ebid/status", None, await access_token(http, a, creds))
    assert status == 200 and answer["atRisk"] is True


async def test_a_forward_keeps_the_report_type_its_token_was_signed_for(
    pair: tuple[RunningBackend, RunningBackend], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """B learns a submission's type from the key its token verified under and tells A, which scores the
    contacts as that type (not as the confirmed test every forward used to be taken for)."""
    a, b = pair
    creds = await register(http, a)
    batch = await batch_of(http, a, await access_token(http, a, creds))
    await clock.advance(1800)
    tan = await admin_tan(http, b, reportType="clinical diagnosis")
    tokens = await buy_tokens(http, b, tan, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    contacts = contacts_heard(batch, T0, minutes=20, attenuation=50)
    for token, contact in zip(tokens, contacts, strict=False):
        assert (await submit(http, b, token, contact))[0] == 200
    await outbox_drained(b)
    rid = a.backend.store.registration_by_client(creds["clientId"]).id  # type: ignore[union-attr]
    exposures = a.backend.store.exposures_of(rid)
    assert len(exposures) == len(contacts)
    assert {e.report_type for e in exposures} == {ReportType.CONFIRMED_CLINICAL_DIAGNOSIS}


async def test_forwards_wait_for_a_peer_that_is_down(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    port_a, port_b = unused_port(), unused_port()
    config_a, config_b = pair_configs(tmp_path, port_a, port_b)
    async with running_backend(config_a, clock, signing_key, port_a) as a:
        creds = await register(http, a)
        batch = await batch_of(http, a, await access_token(http, a, creds))
    async with running_backend(config_b, clock, signing_key, port_b) as b:
        await clock.advance(1800)
        assert (await file_report(http, b, contacts_heard(batch, T0, minutes=20, attenuation=50)))[0] == 200
        for _ in range(200):  # the first attempt fails (A is down) and is rescheduled with backoff
            nxt = b.backend.store.next_forward_time()
            if nxt is not None and nxt > clock.now():
                break
            await asyncio.sleep(0.01)
        assert b.backend.store.next_forward_time() == pytest.approx(clock.now() + 30)
        await clock.advance(30)  # second attempt, A still down: backoff doubles
        for _ in range(200):
            if b.backend.store.next_forward_time() == pytest.approx(clock.now() + 60):
                break
            await asyncio.sleep(0.01)
        assert b.backend.store.next_forward_time() == pytest.approx(clock.now() + 60)
        async with running_backend(config_a, clock, signing_key, port_a) as a_again:
            await clock.advance(60)
            await outbox_drained(b)
            status, answer = await post(
                http, f"{a_again.url}/v1/ebid/status", None, await access_token(http, a_again, creds)
            )
            assert status == 200 and answer["atRisk"] is True


async def test_federation_endpoint_refuses_unsigned_stale_and_replayed(
    pair: tuple[RunningBackend, RunningBackend], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a, _ = pair
    creds = await register(http, a)
    batch = await batch_of(http, a, await access_token(http, a, creds))
    await clock.advance(600)
    body = forward_body(contacts_heard(batch, T0, minutes=5, attenuation=50), ReportType.CONFIRMED_TEST)
    url = f"{a.url}{FORWARD_PATH}"

    async def send(headers: dict[str, str], data: bytes = body) -> tuple[int, dict[str, str]]:
        async with http.post(url, data=data, headers=headers) as r:
            return r.status, await r.json()

    good = signed_headers(SECRET, 2, clock.now(), "POST", FORWARD_PATH, body)
    assert (await send({}))[0] == 401
    assert await send({**good, "X-Proxitrace-Mac": "0" * 64}) == (401, {"error": "federation request with a wrong MAC"})
    assert await send(signed_headers("wrong-secret-0123456", 2, clock.now(), "POST", FORWARD_PATH, body)) == (
        401,
        {"error": "federation request with a wrong MAC"},
    )
    assert (await send(signed_headers(SECRET, 9, clock.now(), "POST", FORWARD_PATH, body)))[1] == {
        "error": "no federation peer for country code 9"
    }
    stale = signed_headers(SECRET, 2, clock.now() - 301, "POST", FORWARD_PATH, body)
    assert "too old" in (await send(stale))[1]["error"]
    assert (await send(good, body + b" "))[0] == 401  # the MAC covers the body
    rid = a.backend.store.registration_by_client(creds["clientId"]).id  # type: ignore[union-attr]
    assert a.backend.store.exposures_of(rid) == []
    assert await send(good) == (200, {"status": "stored"})
    assert await send(good) == (200, {"status": "duplicate"})  # a retry after a lost answer counts once
    assert len(a.backend.store.exposures_of(rid)) == 1
    bad = json.dumps({"id": "x", "contacts": [{"ebid": wire.b64(os.urandom(3))}]}).encode()
    assert (await send(signed_headers(SECRET, 2, clock.now(), "POST", FORWARD_PATH, bad), bad))[0] == 400

"""Nothing unverified is matched: a man in the middle on 127.0.0.1 tampers with, re-signs, strips or
replays the backend's answers; each time the device refuses the list, keeps its bundle tag and stores
nothing, and the next honest answer is matched in full."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict
from support.backend_harness import T0, RunningBackend, heard
from support.sync_devices import Device, issue, make_device

from agent.clock import ManualClock
from agent.protocol import jws
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.sync import ListRejected

Answer = tuple[int, CIMultiDict[str], bytes]
_PASSED = ("x-key-bundle-tag", "signature", "etag", "content-type")


@dataclass
class Proxy:
    """Forwards GETs to the backend and lets a test rewrite each answer; remembers what it saw."""

    upstream: str
    session: aiohttp.ClientSession
    mutate: Callable[[Answer], Answer] | None = None
    seen: list[Answer] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        async with self.session.get(self.upstream + request.path_qs) as r:
            answer: Answer = (r.status, CIMultiDict(r.headers), await r.read())
        self.seen.append(answer)
        status, headers, body = self.mutate(answer) if self.mutate else answer
        kept = {k: v for k, v in headers.items() if k.lower() in _PASSED}
        return web.Response(status=status, body=body or None, headers=kept)


@dataclass
class Scene:
    proxy: Proxy
    device: Device
    clock: ManualClock
    key: ec.EllipticCurvePrivateKey

    async def sync_refused(self, message: str) -> None:
        tag = self.device.client.last_tag(SchemeName.GAEN)
        with pytest.raises(ListRejected, match=message):
            await self.device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        assert self.device.client.last_tag(SchemeName.GAEN) == tag
        assert self.device.store.exposures() == []

    async def sync_ok(self) -> bool:
        return (await self.device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)).notify


@pytest.fixture
async def scene(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> AsyncIterator[Scene]:
    """A reported a key at 10:00 that device B heard yesterday; B talks to the backend through a proxy."""
    proxy = Proxy(running.url, http)
    app = web.Application()
    app.router.add_get("/{tail:.*}", proxy.handle)
    server = TestServer(app)
    await server.start_server()
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.GAEN)
    b = make_device(tmp_path, "b", str(server.make_url("")).rstrip("/"), running, http, clock, SchemeName.GAEN)
    contact = T0 - 19 * 3600
    a.ring.ensure(contact)
    b.store.add_windows(heard(a.ring.scheme(), contact, minutes=20))
    await a.client.report(
        SchemeName.GAEN, await issue(http, running, "tans"), None, a.client.report_keys(SchemeName.GAEN, None, T0)
    )
    await clock.advance(7200)
    try:
        yield Scene(proxy, b, clock, running.private_key)
    finally:
        await server.close()


def flip_a_byte(answer: Answer) -> Answer:
    status, headers, body = answer
    middle = len(body) // 2
    return status, headers, body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]


async def test_tampered_zip(scene: Scene) -> None:
    scene.proxy.mutate = flip_a_byte
    await scene.sync_refused("Signature header refused: content-hash mismatch")
    scene.proxy.mutate = None
    assert await scene.sync_ok()


async def test_tampered_zip_with_a_valid_response_signature(scene: Scene) -> None:
    """Even if the JWS were re-made for the tampered body, the export's own ECDSA signature fails."""

    def tamper_and_resign(answer: Answer) -> Answer:
        status, headers, body = flip_a_byte(answer)
        claims = {"key-bundle-tag": headers["x-key-bundle-tag"], "scheme": "gaen"}
        headers["Signature"] = jws.sign_response(body, scene.key, now=scene.clock.now(), ttl=600, extra_claims=claims)
        return status, headers, body

    scene.proxy.mutate = tamper_and_resign
    await scene.sync_refused("export refused")


async def test_signature_by_another_key(scene: Scene) -> None:
    other = ec.generate_private_key(ec.SECP256R1())

    def resign(answer: Answer) -> Answer:
        status, headers, body = answer
        claims = {"key-bundle-tag": headers["x-key-bundle-tag"], "scheme": "gaen"}
        headers["Signature"] = jws.sign_response(body, other, now=scene.clock.now(), ttl=600, extra_claims=claims)
        return status, headers, body

    scene.proxy.mutate = resign
    await scene.sync_refused("Signature header refused")


async def test_missing_signature_and_forged_tag(scene: Scene) -> None:
    def strip(answer: Answer) -> Answer:
        status, headers, body = answer
        del headers["Signature"]
        return status, headers, body

    def later_tag(answer: Answer) -> Answer:
        status, headers, body = answer
        headers["x-key-bundle-tag"] = str(int(headers["x-key-bundle-tag"]) + 7_200_000)
        return status, headers, body

    scene.proxy.mutate = strip
    await scene.sync_refused("unsigned response")
    scene.proxy.mutate = later_tag
    await scene.sync_refused("the bundle tag is not the one that was signed")
    scene.proxy.mutate = None
    assert await scene.sync_ok()


async def test_expired_signature(scene: Scene) -> None:
    await scene.sync_ok()  # records the honest answer of 12:00 (its Signature expires at 14:00)
    recorded = scene.proxy.seen[-1]
    scene.device.store.wipe()  # a device that never got it
    await scene.clock.advance(7200 + 61)
    scene.proxy.mutate = lambda _: recorded
    await scene.sync_refused("expired")


async def test_replayed_old_bundle(scene: Scene) -> None:
    """An old list replayed after a newer one was processed is refused even while its signature is fresh."""
    assert await scene.sync_ok()
    old = scene.proxy.seen[-1]
    await scene.clock.advance(7200)
    assert not await scene.sync_ok()  # 14:00: 204, tag moves on
    scene.proxy.mutate = lambda _: old
    tag = scene.device.client.last_tag(SchemeName.GAEN)
    with pytest.raises(ListRejected, match="replayed"):
        await scene.device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
    assert scene.device.client.last_tag(SchemeName.GAEN) == tag
    assert len(scene.device.store.exposures()) == 1  # the one from the honest list, not twice

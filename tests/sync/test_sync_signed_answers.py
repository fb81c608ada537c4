"""Every answer a device acts on is signed by the pinned key, fresh and bound to its request.

A forging proxy on 127.0.0.1 stands between the devices and the real backend (the hostile network, or a
hostile backend without the signing key). It passes everything through, records each answer, and for a
chosen path serves what the test makes of the real answer: stripped of its signature, re-signed with
another key, re-signed with the real key but stale or for another request, or an answer recorded for
another device or request. Each refused answer must change nothing: credentials, EBID batches and
exposures stay as they were; a forged "register again" above all must not wipe the credentials.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import RunningBackend, heard
from support.sync_devices import Device, issue, make_device

from agent.clock import ManualClock
from agent.protocol import answers, jws, wire
from agent.schemes.base import SchemeName
from agent.sync import AnswerRejected, verify_answer

FORGED_VERDICT = wire.RiskVerdict(at_risk=True, explanation={}, polls_left_today=5, must_register_again=True)
FORGED_BODY = json.dumps(wire.risk_verdict_body(FORGED_VERDICT)).encode()
TTL = 7200  # the harness backend's signing.response_ttl_seconds (the default)


@dataclass(frozen=True)
class Exchange:
    """What the proxy saw: the request's nonce and the real answer."""

    nonce: str
    body: bytes
    headers: dict[str, str]


Tamper = Callable[[Exchange], tuple[bytes, dict[str, str]]]


@dataclass
class Forger:
    upstream: str
    http: aiohttp.ClientSession
    tamper: dict[str, Tamper] = field(default_factory=dict)
    seen: dict[str, list[Exchange]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        url = self.upstream + request.path_qs
        async with self.http.request(request.method, url, data=await request.read(), headers=headers) as r:
            body, status = await r.read(), r.status
            got = {k: v for k, v in r.headers.items() if k.lower() in {"content-type", "signature"}}
        exchange = Exchange(request.headers.get(answers.NONCE_HEADER, ""), body, got)
        self.seen.setdefault(request.path, []).append(exchange)
        change = self.tamper.get(request.path)
        if change is not None and status < 300:
            body, got = change(exchange)
        return web.Response(status=status, body=body, headers=got)


@pytest.fixture
async def forger(running: RunningBackend, http: aiohttp.ClientSession) -> AsyncIterator[tuple[Forger, str]]:
    proxy = Forger(running.url, http)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield proxy, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def signed(
    key: ec.EllipticCurvePrivateKey,
    body: bytes,
    *,
    nonce: str,
    request: str = "POST /v1/ebid/status",
    iat: float,
    ttl: float = TTL,
) -> tuple[bytes, dict[str, str]]:
    claims = {"nonce": nonce, "request": request}
    token = jws.sign_response(body, key, now=iat, ttl=ttl, issuer="proxitrace", extra_claims=claims)
    return body, {"Content-Type": "application/json", "Signature": token}


@dataclass(frozen=True)
class Snapshot:
    credentials: object
    periods_left: int
    exposures: int


def snapshot(device: Device, clock: ManualClock) -> Snapshot:
    return Snapshot(
        device.store.credential("ebid"), device.ring.ebid_periods_left(clock.now()), len(device.store.exposures())
    )


async def registered(
    tmp_path: Path, name: str, url: str, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> Device:
    device = make_device(tmp_path, name, url, running, http, clock, SchemeName.EBID)
    await device.client.register(await issue(http, running, "enrolment-codes"))
    return device


async def test_a_verdict_signed_with_the_pinned_key_for_this_request_is_acted_on(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    """The control for every refusal below: the proxy's re-signing path yields an answer the device
    accepts when it is signed right, so the refusals are down to the one thing each test breaks."""
    proxy, url = forger
    device = await registered(tmp_path, "a", url, running, http, clock)
    proxy.tamper["/v1/ebid/status"] = lambda ex: signed(
        running.private_key, FORGED_BODY, nonce=ex.nonce, iat=clock.now()
    )
    verdict = await device.client.ask_risk_verdict()
    assert verdict.must_register_again
    assert device.store.credential("ebid") is None and device.ring.ebid_periods_left(clock.now()) == 0


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "unsigned answer"),
        ("wrong key", "bad signature"),
        ("expired", "expired at"),
        ("issued in the future", "iat"),
        ("for another endpoint", "another endpoint"),
        ("for another nonce", "nonce differs"),
    ],
)
async def test_a_forged_register_again_is_refused_and_wipes_nothing(
    tmp_path: Path,
    running: RunningBackend,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    forger: tuple[Forger, str],
    case: str,
    reason: str,
) -> None:
    proxy, url = forger
    device = await registered(tmp_path, "a", url, running, http, clock)
    before = snapshot(device, clock)
    other_key = ec.generate_private_key(ec.SECP256R1())
    late = TTL + answers.CLOCK_TOLERANCE_SECONDS + 60
    forgeries: dict[str, Tamper] = {
        "unsigned": lambda ex: (FORGED_BODY, {"Content-Type": "application/json"}),
        "wrong key": lambda ex: signed(other_key, FORGED_BODY, nonce=ex.nonce, iat=clock.now()),
        "expired": lambda ex: signed(running.private_key, FORGED_BODY, nonce=ex.nonce, iat=clock.now() - late),
        "issued in the future": lambda ex: signed(
            running.private_key, FORGED_BODY, nonce=ex.nonce, iat=clock.now() + answers.CLOCK_TOLERANCE_SECONDS + 60
        ),
        "for another endpoint": lambda ex: signed(
            running.private_key, FORGED_BODY, nonce=ex.nonce, request="GET /v1/ebid/ebids", iat=clock.now()
        ),
        "for another nonce": lambda ex: signed(
            running.private_key, FORGED_BODY, nonce=answers.new_nonce(), iat=clock.now()
        ),
    }
    proxy.tamper["/v1/ebid/status"] = forgeries[case]
    with pytest.raises(AnswerRejected, match=reason):
        await device.client.ask_risk_verdict()
    assert snapshot(device, clock) == before


async def test_a_clock_off_within_the_tolerance_is_accepted(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    proxy, url = forger
    device = await registered(tmp_path, "a", url, running, http, clock)
    ahead = clock.now() + answers.CLOCK_TOLERANCE_SECONDS - 30
    proxy.tamper["/v1/ebid/status"] = lambda ex: signed(running.private_key, FORGED_BODY, nonce=ex.nonce, iat=ahead)
    assert (await device.client.ask_risk_verdict()).must_register_again


async def test_a_verdict_replayed_from_another_device_is_refused(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    proxy, url = forger
    a = await registered(tmp_path, "a", url, running, http, clock)
    b = await registered(tmp_path, "b", url, running, http, clock)
    await a.client.ask_risk_verdict()
    recorded = proxy.seen["/v1/ebid/status"][-1]
    assert "Signature" in recorded.headers
    before = snapshot(b, clock)
    proxy.tamper["/v1/ebid/status"] = lambda ex: (recorded.body, recorded.headers)
    with pytest.raises(AnswerRejected, match="nonce differs"):
        await b.client.ask_risk_verdict()
    assert snapshot(b, clock) == before


async def test_an_ebid_batch_replayed_for_another_request_is_refused(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    """The first batch (recorded at registration) replayed an hour later, still within its expiry: the
    nonce alone refuses it, and the device keeps the batch it has."""
    proxy, url = forger
    a = await registered(tmp_path, "a", url, running, http, clock)
    first = proxy.seen["/v1/ebid/ebids"][-1]
    await clock.advance(3600)
    before = snapshot(a, clock)
    proxy.tamper["/v1/ebid/ebids"] = lambda ex: (first.body, first.headers)
    with pytest.raises(AnswerRejected, match="nonce differs"):
        await a.client.fetch_ebids()
    assert snapshot(a, clock) == before


async def test_foreign_ebids_from_the_network_are_refused(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    proxy, url = forger
    a = await registered(tmp_path, "a", url, running, http, clock)
    b = await registered(tmp_path, "b", url, running, http, clock)
    b_batch = proxy.seen["/v1/ebid/ebids"][-1]
    own = a.ring.scheme()
    proxy.tamper["/v1/ebid/ebids"] = lambda ex: signed(
        ec.generate_private_key(ec.SECP256R1()),
        b_batch.body,
        nonce=ex.nonce,
        request="GET /v1/ebid/ebids",
        iat=clock.now(),
    )
    with pytest.raises(AnswerRejected, match="bad signature"):
        await a.client.fetch_ebids()
    assert a.ring.scheme() == own
    assert b.ring.scheme() != own


@pytest.mark.parametrize("path", ["/v1/ebid/challenge", "/v1/ebid/register"])
async def test_a_registration_with_any_unsigned_answer_keeps_the_old_credentials(
    tmp_path: Path,
    running: RunningBackend,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    forger: tuple[Forger, str],
    path: str,
) -> None:
    proxy, url = forger
    device = await registered(tmp_path, "a", url, running, http, clock)
    before = snapshot(device, clock)
    proxy.tamper[path] = lambda ex: (ex.body, {"Content-Type": "application/json"})
    with pytest.raises(AnswerRejected, match="unsigned answer"):
        await device.client.register(await issue(http, running, "enrolment-codes"))
    assert snapshot(device, clock) == before


async def test_server_info_and_the_tan_exchange_are_signed(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock, forger: tuple[Forger, str]
) -> None:
    proxy, url = forger
    device = make_device(tmp_path, "g", url, running, http, clock, SchemeName.GAEN)
    tan = await issue(http, running, "tans")
    proxy.tamper["/v1/onset"] = lambda ex: (ex.body, {"Content-Type": "application/json"})
    with pytest.raises(AnswerRejected, match="/v1/onset: answer refused: unsigned"):
        await device.client.report(SchemeName.GAEN, tan, None, [])
    assert device.store.credential("pending_report") is None  # a refused upload token is not kept
    del proxy.tamper["/v1/onset"]
    proxy.tamper["/v1/health"] = lambda ex: (ex.body, {"Content-Type": "application/json"})
    with pytest.raises(AnswerRejected, match="/v1/health: answer refused: unsigned"):
        await device.client.report(SchemeName.GAEN, await issue(http, running, "tans"), None, [])


def test_the_pure_verifier_checks_each_claim_with_no_network() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    nonce, now = answers.new_nonce(), 1_800_000_000.0
    body, headers = signed(key, FORGED_BODY, nonce=nonce, iat=now)

    def check(**changes: object) -> str | None:
        args: dict[str, object] = {
            "method": "POST",
            "path": "/v1/ebid/status",
            "nonce": nonce,
            "headers": headers,
            "body": body,
            "public_key": key.public_key(),
            "now": now,
        }
        args.update(changes)
        refusal = verify_answer(**args)  # type: ignore[arg-type]
        return None if refusal is None else refusal.reason

    assert check() is None
    assert check(headers={}) == "unsigned answer (no Signature header)"
    assert "content-hash mismatch" in (check(body=body + b" ") or "")
    assert "bad signature" in (check(public_key=ec.generate_private_key(ec.SECP256R1()).public_key()) or "")
    assert check(nonce=answers.new_nonce()) == "signed for another request (nonce differs): replayed"
    assert check(method="GET") == "signed for another endpoint"
    assert "expired" in (check(now=now + TTL + answers.CLOCK_TOLERANCE_SECONDS + 1) or "")
    assert check(now=now + TTL + answers.CLOCK_TOLERANCE_SECONDS - 1) is None
    assert "in the future" in (check(now=now - answers.CLOCK_TOLERANCE_SECONDS - 1) or "")


async def test_a_malformed_nonce_is_a_400_before_anything_is_written(
    running: RunningBackend, http: aiohttp.ClientSession
) -> None:
    url = f"{running.url}/v1/ebid/challenge"
    async with http.post(url, headers={answers.NONCE_HEADER: "not a nonce"}) as r:
        assert r.status == 400 and answers.NONCE_HEADER in (await r.json())["error"]
    assert running.backend.store._one("SELECT COUNT(*) FROM challenges")[0] == 0
    async with http.post(url, headers={answers.NONCE_HEADER: answers.new_nonce()}) as r:
        assert r.status == 200 and "Signature" in r.headers


async def _reporter_and_contact(
    tmp_path: Path, url: str, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> tuple[Device, list[wire.ReportedContact], int]:
    """A reporter (through the proxy) that heard a registered device (direct) for 20 minutes; the heard
    device's registration id."""
    heard_device = await registered(tmp_path, "heard", running.url, running, http, clock)
    reporter = make_device(tmp_path, "reporter", url, running, http, clock, SchemeName.EBID)
    reporter.store.add_windows(heard(heard_device.ring.scheme(), clock.now() + 60, minutes=20, rssi=-50))
    await clock.advance(3600)
    contacts = reporter.client.ebid_contacts(None, clock.now(), 0.0)
    client_id = heard_device.store.credential("ebid")["client_id"]  # type: ignore[index]
    reg = running.backend.store.registration_by_client(client_id)
    assert contacts and reg is not None
    return reporter, contacts, reg.id


@pytest.mark.parametrize("path", ["/v1/ebid/submission-key", "/v1/ebid/submission-tokens", "/v1/ebid/submissions"])
@pytest.mark.parametrize("case", ["unsigned", "wrong key", "replayed"])
async def test_a_forged_submission_answer_is_refused(
    tmp_path: Path,
    running: RunningBackend,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    forger: tuple[Forger, str],
    path: str,
    case: str,
) -> None:
    """A forged submission key above all: one the network chose would let it tie every signature it
    makes to one report. The device stops at the refused answer; before the token request (a forged
    key) the TAN is not spent and the same report then goes through with the real answers."""
    proxy, url = forger
    reporter, contacts, heard_id = await _reporter_and_contact(tmp_path, url, running, http, clock)
    method = "GET" if path.endswith("submission-key") else "POST"
    other_key = ec.generate_private_key(ec.SECP256R1())
    if case == "replayed":  # an answer the backend signed for another device's request on this path
        other = make_device(tmp_path, "other", url, running, http, clock, SchemeName.EBID)
        await other.client.report_ebid(await issue(http, running, "tans"), contacts[:1])
        recorded = proxy.seen[path][-1]
        running.backend.store.erase_registration(heard_id)
        reporter, contacts, heard_id = await _reporter_and_contact(tmp_path / "again", url, running, http, clock)
    forgeries: dict[str, Tamper] = {
        "unsigned": lambda ex: (ex.body, {"Content-Type": "application/json"}),
        "wrong key": lambda ex: signed(other_key, ex.body, nonce=ex.nonce, request=f"{method} {path}", iat=clock.now()),
        "replayed": lambda ex: (recorded.body, recorded.headers),
    }
    proxy.tamper[path] = forgeries[case]
    reason = {"unsigned": "unsigned answer", "wrong key": "bad signature", "replayed": "nonce differs"}[case]
    tan = await issue(http, running, "tans")
    with pytest.raises(AnswerRejected, match=f"{path}: answer refused: .*{reason}"):
        await reporter.client.report_ebid(tan, contacts)
    filed = len(running.backend.store.exposures_of(heard_id))
    # nothing is filed before the submissions; with no spread here every submission is due at once, each
    # on its own connection, so those already sent when the first receipt is refused may be filed
    assert filed == 0 if path != "/v1/ebid/submissions" else filed <= len(contacts)
    if path == "/v1/ebid/submission-key":
        del proxy.tamper[path]
        await reporter.client.report_ebid(tan, contacts)  # the TAN was never sent, so it still buys tokens
        assert len(running.backend.store.exposures_of(heard_id)) == len(contacts)

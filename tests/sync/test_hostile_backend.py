"""The agent against a backend that lies: redirects elsewhere, impossible proofs of work, wrongly shaped
answers. Each case runs the real CLI (a subprocess) against a hostile aiohttp server on 127.0.0.1 and
expects one line on stderr, exit 1, no traceback, and the device's data unchanged.

The hostile server holds the signing key the device pins and signs its 2xx answers as the real backend
does (``agent.protocol.answers``): a backend that is buggy or compromised, whose answers pass the
signature check, must still not crash the device or make it act on nonsense. (An unsigned or forged answer
is refused earlier, see test_sync_signed_answers.py.)"""

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from agent import signing_keys
from agent.keys import KeyRing
from agent.protocol import answers, jws, proof_of_work
from agent.schemes.base import SchemeName
from agent.server.signing import ISSUER
from agent.store import Store
from agent.sync.service import EBID_CREDENTIAL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEALTH = {
    "countryCode": 1,
    "keysPerUpload": 10,
    "bucketSeconds": 7200,
    "periodSeconds": 900,
    "powDifficulty": 4,
    "statusPollsPerDay": 4,
}
SIGNER = ec.generate_private_key(ec.SECP256R1())
PINNED = signing_keys.public_key_base64(SIGNER.public_key())
CHALLENGE = {"challenge": "AAAAAAAAAAAAAAAAAAAAAA==", "difficulty": 4, "expiresAt": 4e9}


@dataclass
class Hostile:
    """One server that answers each (method, path) as the test says (404 otherwise) and records requests."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, await request.read()))
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": "no such thing"}, status=404)
        return await handler(request)


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Hostile, Hostile]]:
    """The hostile backend and a second server on another port that records whatever reaches it."""
    pair = (Hostile(), Hostile())
    running = []
    for h in pair:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", h.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        h.url = str(server.make_url("")).rstrip("/")
        running.append(server)
    yield pair
    for server in running:
        await server.close()


def answer(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        signed = dict(headers or {})
        if 200 <= status < 300 and request.path in answers.SIGNED_ANSWER_PATHS:
            claims = answers.answer_claims(request.method, request.path, request.headers.get(answers.NONCE_HEADER, ""))
            signed["Signature"] = jws.sign_response(
                text.encode(), SIGNER, now=time.time(), ttl=3600, issuer=ISSUER, extra_claims=claims
            )
        return web.Response(text=text, status=status, content_type="application/json", headers=signed)

    return handler


def redirect(to: str, status: int = 307) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": to + request.path})

    return handler


async def proxitrace(tmp: Path, url: str, scheme: str, *args: str) -> tuple[int, str, str]:
    """The CLI against ``url``, with the hostile server's signing key pinned."""
    conf = tmp / "agent.toml"
    conf.write_text(
        f'[agent]\nscheme = "{scheme}"\n'
        f'accept_unsynchronised_clock_testbed = true\n[backend]\nurl = "{url}"\npublic_key = "{PINNED}"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "--config",
        str(conf),
        "--state-dir",
        str(tmp / "state"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def one_line(result: tuple[int, str, str]) -> str:
    code, out, err = result
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, (code, out, err)
    return lines[0]


def registered(tmp: Path, url: str) -> dict[str, Any]:
    creds = {"backend": url, "client_id": "c1", "client_secret": "s" * 32, "country_code": 1, "period_seconds": 900}
    store = Store.open(tmp / "state")
    store.set_credential(EBID_CREDENTIAL, creds, time.time())
    store.close()
    return creds


def stored_credentials(tmp: Path) -> dict[str, Any] | None:
    store = Store.open(tmp / "state")
    try:
        return store.credential(EBID_CREDENTIAL)
    finally:
        store.close()


async def test_a_redirect_from_the_tan_exchange_never_resends_the_tan(
    servers: tuple[Hostile, Hostile], tmp_path: Path
) -> None:
    hostile, elsewhere = servers
    store = Store.open(tmp_path / "state")
    KeyRing(store, SchemeName.GAEN).ensure(time.time() - 3600)
    store.close()
    hostile.routes[("GET", "/v1/health")] = answer(HEALTH)
    elsewhere.routes[("POST", "/v1/onset")] = answer({"token": "t", "expiresAt": 4e9})
    elsewhere.routes[("POST", "/v1/tan/check")] = answer({"onset": None, "reportType": 1})
    for path in ("/v1/tan/check", "/v1/onset"):  # the TAN is checked before consent, spent after it
        hostile.routes[("POST", "/v1/tan/check")] = answer({"onset": None, "reportType": 1})
        for status in (307, 308, 302):
            hostile.routes[("POST", path)] = redirect(elsewhere.url, status)
            line = one_line(
                await proxitrace(tmp_path, hostile.url, "gaen", "report", "--tan", "SECRET-TAN-1234", "--yes")
            )
            assert f"HTTP {status}" in line and "redirects are never followed" in line
    assert elsewhere.seen == []
    assert [p for _, p, _ in hostile.seen].count("/v1/onset") == 3


async def test_a_redirect_from_the_token_endpoint_never_resends_the_secret(
    servers: tuple[Hostile, Hostile], tmp_path: Path
) -> None:
    hostile, elsewhere = servers
    creds = registered(tmp_path, hostile.url)
    hostile.routes[("POST", "/v1/ebid/token")] = redirect(elsewhere.url)
    elsewhere.routes[("POST", "/v1/ebid/token")] = answer({"accessToken": "a", "expiresAt": 4e9})
    line = one_line(await proxitrace(tmp_path, hostile.url, "ebid", "status-check"))
    assert "HTTP 307" in line and "redirects are never followed" in line
    assert elsewhere.seen == []
    assert creds["client_secret"].encode() in hostile.seen[0][2]  # it did go to the configured backend
    assert stored_credentials(tmp_path) == creds


async def test_https_is_never_downgraded_by_a_redirect(servers: tuple[Hostile, Hostile], tmp_path: Path) -> None:
    hostile, elsewhere = servers
    hostile.routes[("POST", "/v1/ebid/challenge")] = redirect(elsewhere.url.replace("127.0.0.1", "localhost"), 301)
    line = one_line(await proxitrace(tmp_path, hostile.url, "ebid", "register", "--code", "CODE"))
    assert "HTTP 301" in line and elsewhere.seen == []


@pytest.mark.parametrize("difficulty", [64, -1, proof_of_work.MAX_DIFFICULTY + 1])
async def test_an_impossible_proof_of_work_is_refused_at_once(
    servers: tuple[Hostile, Hostile], tmp_path: Path, difficulty: int
) -> None:
    hostile, _ = servers
    """Refused while the challenge answer is read, so no proof of work is ever started: the line is the
    answer check's (an unexpected ``body.difficulty``; the solver, had it been reached, would refuse in its
    own words, or search for hours at an unchecked 33), and nothing is sent after the challenge."""
    hostile.routes[("POST", "/v1/ebid/challenge")] = answer({**CHALLENGE, "difficulty": difficulty})
    line = one_line(await proxitrace(tmp_path, hostile.url, "ebid", "register", "--code", "CODE"))
    bounds = f"must be between 0 and {proof_of_work.MAX_DIFFICULTY}, got {difficulty}"
    assert line == f"proxitrace: /v1/ebid/challenge: unexpected answer (body.difficulty: {bounds})"
    assert [(m, p) for m, p, _ in hostile.seen][-1] == ("POST", "/v1/ebid/challenge")
    assert ("POST", "/v1/ebid/register") not in [(m, p) for m, p, _ in hostile.seen]
    assert stored_credentials(tmp_path) is None


def test_the_solver_stops_itself_at_its_deadline() -> None:
    """The deadline is checked with each progress report: one already past stops the search at the first
    report (counted in tries, not timed), where the difficulty would take some four billion."""
    reports: list[int] = []
    with pytest.raises(proof_of_work.ProofOfWorkTimeout) as stopped:
        proof_of_work.solve(bytes(16), proof_of_work.MAX_DIFFICULTY, reports.append, deadline=time.monotonic() - 1)
    assert len(reports) == 1 and f"after {reports[0]} tries" in str(stopped.value)
    for bad in (64, -1):
        with pytest.raises(ValueError, match="difficulty must be between 0 and 32"):
            proof_of_work.solve(bytes(16), bad)


WRONG_SHAPES = [
    ("register", ("POST", "/v1/ebid/challenge"), answer([CHALLENGE]), "/v1/ebid/challenge: unexpected answer"),
    (
        "register",
        ("POST", "/v1/ebid/challenge"),
        answer({k: v for k, v in CHALLENGE.items() if k != "challenge"}),
        "/v1/ebid/challenge: unexpected answer",
    ),
    ("register", ("POST", "/v1/ebid/challenge"), answer("[" * 100_000), "not JSON"),
    ("status-check", ("POST", "/v1/ebid/token"), answer({"accessToken": 7}), "/v1/ebid/token: unexpected answer"),
    ("status-check", ("POST", "/v1/ebid/token"), answer({"expiresAt": 1e300 * 10}), "/v1/ebid/token: unexpected"),
    ("report", ("GET", "/v1/health"), answer({"countryCode": "1"}), "/v1/health: unexpected answer"),
    ("report", ("GET", "/v1/health"), answer("1" * 5000), "/v1/health: the backend answered something that is not"),
    ("sync", ("GET", "/v2/gaen/exposed"), answer("", 204, {"x-key-bundle-tag": "١٢٣"}), "no valid x-key-bundle-tag"),
    ("sync", ("GET", "/v2/gaen/exposed"), answer("", 204, {"x-key-bundle-tag": "²"}), "no valid x-key-bundle-tag"),
    ("sync", ("GET", "/v2/gaen/exposed"), answer("", 503, {"Retry-After": "²"}), "HTTP 503"),
]


@pytest.mark.parametrize(("command", "route", "handler", "phrase"), WRONG_SHAPES)
async def test_a_wrongly_shaped_answer_is_one_line_and_changes_nothing(
    servers: tuple[Hostile, Hostile],
    tmp_path: Path,
    command: str,
    route: tuple[str, str],
    handler: Handler,
    phrase: str,
) -> None:
    hostile, _ = servers
    hostile.routes[route] = handler
    hostile.routes.setdefault(("GET", "/v1/health"), answer(HEALTH))
    # a report checks its TAN first (the answer carries the officer's onset), then asks for server info
    hostile.routes.setdefault(("POST", "/v1/tan/check"), answer({"onset": None, "reportType": 1}))
    hostile.routes.setdefault(("POST", "/v1/onset"), answer({"token": "t", "expiresAt": 4e9, "reportType": 1}))
    args = {"register": ("--code", "CODE"), "report": ("--tan", "TAN", "--yes")}
    scheme = "gaen" if command in {"sync", "report"} else "ebid"
    creds = registered(tmp_path, hostile.url) if command == "status-check" else None
    store = Store.open(tmp_path / "state")
    KeyRing(store, SchemeName.GAEN).ensure(time.time() - 3600)
    keys_before = store.own_keys(SchemeName.GAEN)
    store.close()
    result = await proxitrace(tmp_path, hostile.url, scheme, command, *args.get(command, ()))
    assert phrase in one_line(result)
    assert stored_credentials(tmp_path) == creds
    store = Store.open(tmp_path / "state")
    try:
        assert store.own_keys(SchemeName.GAEN) == keys_before
        assert store.credential("sync.gaen") is None  # the bundle tag did not move
    finally:
        store.close()

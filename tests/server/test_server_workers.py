"""`proxitrace backend serve --workers 2` against one PostgreSQL: both workers run, the TAN → token →
upload and the EBID registration flows pass, one TAN sent by many clients at once (spread over the
workers) is spent exactly once, and wrong TANs or admin tokens sent at once from one address are judged
at most the limit's number of times, whichever worker takes them. SQLite refuses several workers with one
line."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from support import backend_harness
from support.backend_calls import access_token, admin_tan, batch_of, buy_tokens, exchange, register, submit, upload
from support.backend_harness import ADMIN_TOKEN, KEYS_PER_UPLOAD, RunningBackend
from support.postgres import Cluster, database_for

from agent import risk
from agent.clock import SystemClock
from agent.protocol import wire
from agent.schemes import ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.server import app as backend_app
from agent.server.database import Database
from agent.server.federation import FORWARD_PATH
from agent.server.scoring import ServerRiskScorer
from agent.server.signing import KeySigner


@dataclass(frozen=True)
class Served:
    """A backend served by the command (the calls in ``support.backend_calls`` need only its URL)."""

    url: str
    pid: int


def _config(tmp_path: Path, database: str, max_failures: int = 100, federation: str = "") -> Path:
    """By default a limit the refused re-spends of the flows test do not reach (that is not what it
    checks); ``federation``: a ``[federation]`` section."""
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\ndatabase = "{database}"\nadmin_token = "{ADMIN_TOKEN}"\n'
        f"[upload]\nkeys_per_upload = {KEYS_PER_UPLOAD}\nmin_response_seconds = 0\n"
        "[ebid]\npow_difficulty = 8\n"
        f"[tan]\nmax_failures_per_hour = {max_failures}\n{federation}"
    )
    subprocess.run([sys.executable, "-m", "agent", "backend", "keygen", "--config", str(path)], check=True)
    return path


@contextmanager
def serving_two_workers(config: Path) -> Iterator[Served]:
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--port", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if m := re.search(r"listening on (http://\S+)", line):
                # keep reading its log (one line per request), or the pipe fills and the server stops
                threading.Thread(target=server.stderr.read, daemon=True).start()
                yield Served(m[1], server.pid)
                break
        else:
            raise AssertionError("the backend did not start")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


@pytest.fixture
def two_workers(tmp_path: Path, postgres_cluster: Cluster) -> Iterator[Served]:
    with serving_two_workers(_config(tmp_path, database_for(str(postgres_cluster.socket_dir), tmp_path / "data"))) as s:
        yield s


def _workers(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_two_workers_pass_the_upload_and_ebid_flows_and_spend_a_tan_once(two_workers: Served) -> None:
    assert len(_workers(two_workers.pid)) == 2
    rb = cast(RunningBackend, two_workers)
    # a new connection per request, so the kernel hands requests to either worker
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        tan = await admin_tan(http, rb)
        answers = await asyncio.gather(*(exchange(http, rb, tan) for _ in range(16)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] + [403] * 15
        token = next(answer["token"] for status, answer in answers if status == 200)
        today = gaen.day_start_enin(gaen.enin(time.time()))
        keys = [PublishedKey(bytes([d]) * 16, today - d * 144, transmission_risk_level=3) for d in (1, 2)]
        body = wire.key_upload_body(SchemeName.GAEN, keys, KEYS_PER_UPLOAD, onset_day=None)
        assert (await upload(http, rb, token, body))[0] == 200
        assert (await upload(http, rb, token, body))[0] == 401  # the token was spent, whichever worker asks
        creds = await register(http, rb)
        batch = await batch_of(http, rb, await access_token(http, rb, creds))
        assert batch.entries
    assert len(_workers(two_workers.pid)) == 2  # neither worker fell over


LIMIT = 4


async def test_wrong_guesses_sent_at_once_to_two_workers_are_judged_limit_times(
    tmp_path: Path, postgres_cluster: Cluster
) -> None:
    """3 x the limit at once, each on a connection of its own (so spread over both workers): exactly
    ``LIMIT`` are judged, the rest refused with a Retry-After. Workers that drew a limiter secret each, or
    checked before counting, would judge more."""
    config = _config(tmp_path, database_for(str(postgres_cluster.socket_dir), tmp_path / "data"), LIMIT)
    with serving_two_workers(config) as served:
        assert len(_workers(served.pid)) == 2

        async def ask(http: aiohttp.ClientSession, path: str, body: object, token: str | None) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.post(served.url + path, json=body, headers=headers) as r:
                return r.status, r.headers.get("Retry-After", "")

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for path, body, token, judged in (
                ("/v1/onset", {"tan": "AAAA-BBBB-CCCC"}, None, 403),
                ("/v1/admin/tans", {}, "wrong-token", 401),
            ):
                answers = await asyncio.gather(*(ask(http, path, body, token) for _ in range(3 * LIMIT)))
                assert sorted(status for status, _ in answers) == [judged] * LIMIT + [429] * (2 * LIMIT), path
                assert all(int(retry) > 0 for status, retry in answers if status == 429)


K_G = "00112233445566778899aabbccddeeff"
PEER_SECRET = "shared-secret-1-2-0123"
FORWARDS = 12


@asynccontextmanager
async def counting_peer(tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[CountingPeer]:
    """A real backend (country 2, on SQLite, on the wall clock the workers keep) that counts each
    forward's message id as it arrives and answers each a little late, so that deliveries overlap."""
    origin = {"country_code": 1, "url": "http://127.0.0.1:9", "secret": PEER_SECRET}  # it only receives
    config = backend_harness.backend_config(
        tmp_path / "peer", server={"country_code": 2}, federation={"key": K_G, "peers": [origin]}
    )
    scorer = ServerRiskScorer(risk.RiskSettings())
    backend = backend_app.open_backend(config, SystemClock(), KeySigner(config, signing_key), scorer)
    app = backend_app.create_app(backend)
    received: Counter[str] = Counter()

    async def count(request: web.Request, _response: web.StreamResponse) -> None:
        if request.path == FORWARD_PATH:
            received[json.loads(await request.read())["id"]] += 1
            await asyncio.sleep(0.1)

    app.on_response_prepare.append(count)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield CountingPeer(RunningBackend(backend, server, signing_key), received)
    finally:
        await server.close()


@dataclass(frozen=True)
class CountingPeer:
    rb: RunningBackend
    received: Counter[str]


async def test_two_workers_deliver_each_forward_once(
    tmp_path: Path, postgres_cluster: Cluster, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    """Reports holding a peer's EBIDs, filed at once over both workers: each worker is woken by the
    forwards it queued, yet one at a time delivers, so the peer receives every message once."""
    database = database_for(str(postgres_cluster.socket_dir), tmp_path / "data")
    async with counting_peer(tmp_path, signing_key) as peer, aiohttp.ClientSession() as http:
        creds = await register(http, peer.rb)
        batch = await batch_of(http, peer.rb, await access_token(http, peer.rb, creds))
        federation = (
            f'[federation]\nkey = "{K_G}"\nretry_seconds = 1.0\n'
            f'[[federation.peers]]\ncountry_code = 2\nurl = "{peer.rb.url}"\nsecret = "{PEER_SECRET}"\n'
        )
        with serving_two_workers(_config(tmp_path, database, federation=federation)) as served:
            origin = cast(RunningBackend, served)
            now = time.time()
            [entry] = [e for e in batch.entries if e.period == ebid.period_of(now, batch.period_seconds)]
            scan = wire.ScanRecord(now - 1, 50, 46)
            contact = wire.ReportedContact(entry.ecc, entry.ebid, entry.period, scan.time, (scan,))
            tokens = await buy_tokens(http, origin, await admin_tan(http, origin))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as spread:
                answers = await asyncio.gather(*(submit(spread, origin, t, contact) for t in tokens[:FORWARDS]))
            assert [status for status, _ in answers] == [200] * FORWARDS
            outbox = Database(database)
            try:
                for _ in range(600):
                    if outbox.one("SELECT COUNT(*) FROM outbox")[0] == 0 and len(peer.received) == FORWARDS:
                        break
                    await asyncio.sleep(0.05)
            finally:
                outbox.close()
        assert len(peer.received) == FORWARDS
        assert set(peer.received.values()) == {1}  # whatever else the workers did meanwhile, none sent one twice


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        'proxitrace: --workers: several workers need a shared PostgreSQL store ([server] database = "postgresql://...")'
    ]

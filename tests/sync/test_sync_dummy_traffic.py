"""Dummy traffic looks like real traffic on the wire (issue 13, item 4).

A small recording proxy on 127.0.0.1 sits between the agent and the backend and keeps, per TCP
connection, only its opening time and the bytes each way (what a network observer of TLS traffic sees).
The agent makes real EBID reports (a TAN, real contacts) and dummy ones through it. Stated bounds:
- sizes: equal exactly, connection for connection, once sorted (padding makes every submission, token
  request and answer the same length);
- counts: the same number of connections and of bytes in total;
- delays: the gaps between successive submissions pass a two-sample Kolmogorov-Smirnov test at
  alpha = 0.01 (critical value 1.628 * sqrt((n + m) / (n m))).
The same for a GAEN upload and its dummy (sizes and counts).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
from support.backend_harness import DAY, T0, RunningBackend, heard
from support.sync_devices import issue, make_device

from agent.clock import AcceleratedClock, ManualClock
from agent.protocol import wire
from agent.schemes.base import SchemeName
from agent.sync import SyncService, submissions

SPREAD_SECONDS = 1.5
REPORTS = 3
KS_C_ALPHA_001 = 1.628


@dataclass
class Connection:
    opened: float
    up: int = 0
    down: int = 0


@dataclass
class Recorder:
    connections: list[Connection] = field(default_factory=list)

    def take(self) -> list[Connection]:
        taken, self.connections = self.connections, []
        return taken


@asynccontextmanager
async def recording_proxy(target_port: int) -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection, up: bool) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    conn.up += len(data)
                else:
                    conn.down += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        conn = Connection(time.monotonic())
        recorder.connections.append(conn)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_r, server_w, conn, True), pipe(server_r, client_w, conn, False))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.close()


def ks_statistic(a: list[float], b: list[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    points = sorted(a + b)
    return max(abs(sum(x <= p for x in a) / len(a) - sum(x <= p for x in b) / len(b)) for p in points)


def submissions_of(connections: list[Connection]) -> list[Connection]:
    """The connections that carry one padded submission (its body and headers, not the token request)."""
    return [c for c in connections if wire.SUBMISSION_BODY_BYTES <= c.up < wire.SUBMISSION_BODY_BYTES + 1024]


def submission_gaps(connections: list[Connection]) -> list[float]:
    opened = [c.opened for c in submissions_of(connections)]
    return [b - a for a, b in itertools.pairwise(opened)]


def port_of(rb: RunningBackend) -> int:
    return int(rb.url.rsplit(":", 1)[1])


async def test_ebid_dummy_reports_match_real_ones_on_the_wire(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with recording_proxy(port_of(running)) as (url, recorder):
        bob = make_device(tmp_path, "bob", running.url, running, http, clock, SchemeName.EBID)
        await bob.client.register(await issue(http, running, "enrolment-codes"))
        ann = make_device(tmp_path, "ann", url, running, http, clock, SchemeName.EBID)
        ann.store.add_windows(heard(bob.ring.scheme(), T0 + 300, minutes=40, rssi=-60))
        await clock.advance(3600)
        contacts = ann.client.ebid_contacts(None, clock.now(), 0.0)
        assert 1 < len(contacts) < wire.SUBMISSION_TOKEN_BATCH
        settings = replace(ann.client.settings, submission_spread_seconds=SPREAD_SECONDS)
        # a connection per request, so the proxy counts requests; real time for the spread, as in the daemon,
        # from the backend's time (a few seconds ahead of it at most: inside the signed answers' tolerance)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            agent = SyncService(session, settings, AcceleratedClock(clock.now()), ann.store)
            real: list[list[Connection]] = []
            fake: list[list[Connection]] = []
            for _ in range(REPORTS):
                await agent.report_ebid(await issue(http, running, "tans"), contacts)
                real.append(recorder.take())
                await agent.fake_report(SchemeName.EBID)
                fake.append(recorder.take())
    for r, f in zip(real, fake, strict=True):
        assert len(r) == len(f) >= wire.SUBMISSION_TOKEN_BATCH  # every submission on its own connection
        assert sorted((c.up, c.down) for c in r) == sorted((c.up, c.down) for c in f)
    real_gaps = [g for r in real for g in submission_gaps(r)]
    fake_gaps = [g for f in fake for g in submission_gaps(f)]
    n, m = len(real_gaps), len(fake_gaps)
    assert n == m == REPORTS * (wire.SUBMISSION_TOKEN_BATCH - 1)
    assert ks_statistic(real_gaps, fake_gaps) < KS_C_ALPHA_001 * math.sqrt((n + m) / (n * m))
    sent = [c.opened for c in submissions_of(real[0])]
    # spread over the configured time plus what the sends take on a loaded machine, not a sum of gaps
    # (sleeping each gap in turn would take about 8 spreads for 16 submissions)
    assert max(sent) - min(sent) < SPREAD_SECONDS + 5.0
    reg = running.backend.store.registration_by_client(bob.store.credential("ebid")["client_id"])  # type: ignore[index]
    assert reg is not None
    assert len(running.backend.store.exposures_of(reg.id)) == len(contacts)  # the real ones, once; no fake


async def test_gaen_dummy_upload_matches_a_real_one_on_the_wire(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with recording_proxy(port_of(running)) as (url, recorder):
        a = make_device(tmp_path, "a", url, running, http, clock, SchemeName.GAEN)
        a.ring.ensure(T0 - DAY)
        keys = a.client.report_keys(SchemeName.GAEN, None, clock.now())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            agent = SyncService(session, a.client.settings, clock, a.store)
            await agent.report(SchemeName.GAEN, await issue(http, running, "tans"), None, keys)
            real = recorder.take()
            await agent.fake_report(SchemeName.GAEN)
            fake = recorder.take()
    assert len(real) == len(fake) == 4  # TAN check, health, TAN exchange, upload
    assert sorted((c.up, c.down) for c in real) == sorted((c.up, c.down) for c in fake)
    assert running.backend.store.count_keys(SchemeName.GAEN) == len(keys)


async def test_a_slow_backend_does_not_shift_the_submissions_times(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Each submission opens its connection at its planned time: a backend that takes longer to answer
    (one that stores a real contact) must not push the later ones back, or the gaps would tell a real
    report from a dummy."""
    delay = 1.0
    async with recording_proxy(port_of(running)) as (url, recorder):
        ann = make_device(tmp_path, "ann", url, running, http, clock, SchemeName.EBID)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            agent = SyncService(session, ann.client.settings, AcceleratedClock(clock.now()), ann.store)
            original = agent._client.submit

            async def slow_submit(body: bytes) -> None:
                await asyncio.sleep(delay)
                await original(body)

            agent._client.submit = slow_submit  # type: ignore[method-assign]
            plan = [submissions.PlannedSubmission(i * 0.05, submissions.dummy_submission(256)) for i in range(8)]
            await agent._send_at(plan)
    opened = [c.opened for c in submissions_of(recorder.take())]
    assert len(opened) == 8
    # sent one after another, each waiting for the slow answer before it, the eight would open over 7 s;
    # at their planned times they open over 0.35 s (plus what a loaded machine adds, well under 7 s)
    assert max(opened) - min(opened) < 7 * delay / 2

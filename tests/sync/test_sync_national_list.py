"""A national-size list through the daemon's sync path, end to end on 127.0.0.1: a plain GAEN key server
(a static CDN, as in test_sync_key_server) publishes one signed file of 100 000 keys with three a device
heard, next to our real backend. The sync downloads it, verifies it and matches it over the configured
number of processes (really started: each reports its PID with its hits) and finds the three; and all
the while the event loop keeps serving: a callback scheduled every few milliseconds is never late by
more than a small share of the time the list takes (matched on the loop, it would be late by all of it)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import T0, RunningBackend
from support.exportkit import standard_export
from support.loop_watch import LoopWatch
from support.sync_devices import heard_gaen_key

from agent.clock import ManualClock, day_of
from agent.match_workers import MIN_KEYS_PER_WORKER
from agent.protocol.export import SignatureInfo
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.store import Store
from agent.sync import KeyServer, SyncService, SyncSettings

KEYS = 2 * MIN_KEYS_PER_WORKER  # the smallest list two workers are started for
TODAY = day_of(T0)
INFO = SignatureInfo(verification_key_id="262", verification_key_version="v1")


@pytest.fixture(scope="module")
def national() -> tuple[ec.EllipticCurvePrivateKey, bytes, list[PublishedKey]]:
    rng = random.Random(18)
    keys = [PublishedKey(rng.randbytes(16), (TODAY - rng.randrange(1, 14)) * 144, 144, 5, 1) for _ in range(KEYS)]
    signer = ec.generate_private_key(ec.SECP256R1())
    data = standard_export(signer, keys, start=int(T0) - 86400, end=int(T0) - 3600, region="XX", signature_info=INFO)
    return signer, data, rng.sample(keys, 3)


@pytest.fixture
async def cdn(
    tmp_path: Path, national: tuple[ec.EllipticCurvePrivateKey, bytes, list[PublishedKey]]
) -> AsyncIterator[str]:
    root = tmp_path / "cdn"
    root.mkdir()
    (root / "national-1.zip").write_bytes(national[1])
    (root / "index.txt").write_text("national-1.zip\n")
    app = web.Application()
    app.router.add_static("/", root)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/index.txt"))
    finally:
        await server.close()


@pytest.mark.parametrize("match_workers", [1, 2])
async def test_a_national_list_is_matched_over_the_workers_while_the_loop_keeps_serving(
    tmp_path: Path,
    running: RunningBackend,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    cdn: str,
    national: tuple[ec.EllipticCurvePrivateKey, bytes, list[PublishedKey]],
    match_workers: int,
) -> None:
    signer, _, planted = national
    store = Store.open(tmp_path / "device")
    for key in planted:
        store.add_windows(heard_gaen_key(key.key_data, key.rolling_start_interval_number + 60))
    settings = SyncSettings(
        base_url=running.url,
        public_key=running.public_key,
        key_server=KeyServer(cdn, signer.public_key(), INFO.verification_key_id),
        match_workers=match_workers,
    )
    service = SyncService(http, settings, clock, store, rng=random.Random(7))
    with LoopWatch() as watch:
        began = time.monotonic()
        outcome = await service.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        took = time.monotonic() - began
    assert (outcome.lists, outcome.keys, outcome.matched_keys, outcome.problems) == (1, KEYS, 3, ())
    assert outcome.match_processes == match_workers
    assert watch.ticks > 10, "the loop never ran while the list was processed"
    assert watch.worst < took / 4, f"the loop stalled {watch.worst:.2f} s of the list's {took:.2f} s"
    store.close()

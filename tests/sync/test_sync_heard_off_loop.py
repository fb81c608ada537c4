"""A sync reads every ID heard within retention from the store and indexes them, once for all its lists
(HeardIds); over a large store that takes a sizeable share of a second, and on the event loop it would
stall everything else for all of it. Here a plain key server on 127.0.0.1 (a static CDN, as in
test_sync_key_server) publishes one small signed file with a key the device heard, next to 300 000 other
heard IDs: the cost of reading them is measured first, in this run, and the loop must never be late by
half of it while the sync reads them and matches."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from support.loop_watch import LoopWatch

from agent.clock import ManualClock, day_of
from agent.exposure import HeardIds
from agent.protocol.export import SignatureInfo, build_export
from agent.risk import RiskSettings
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow
from agent.store import Store
from agent.sync import KeyServer, SyncService, SyncSettings

T0 = 1_763_978_400.0
HEARD_IDS = 300_000  # two weeks of a busy device: its distinct IDs
INFO = SignatureInfo(verification_key_id="262", verification_key_version="v1")


@pytest.fixture
async def cdn(tmp_path: Path) -> AsyncIterator[tuple[str, ec.EllipticCurvePrivateKey, PublishedKey]]:
    rng = random.Random(19)
    heard = PublishedKey(rng.randbytes(16), (day_of(T0) - 2) * 144, 144, 5, 1)
    keys = [heard, *(PublishedKey(rng.randbytes(16), (day_of(T0) - 3) * 144, 144, 5, 1) for _ in range(200))]
    signer = ec.generate_private_key(ec.SECP256R1())
    data = build_export(
        keys,
        start=int(T0) - 86400,
        end=int(T0) - 3600,
        region="XX",
        batch_num=1,
        batch_size=1,
        signature_info=INFO,
        private_key=signer,
    )
    root = tmp_path / "cdn"
    root.mkdir()
    (root / "day-1.zip").write_bytes(data)
    (root / "index.txt").write_text("day-1.zip\n")
    app = web.Application()
    app.router.add_static("/", root)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/index.txt")), signer, heard
    finally:
        await server.close()


def device_store(path: Path, heard: PublishedKey) -> Store:
    """HEARD_IDS IDs heard once each over the last week, and ten minutes of the heard key's RPI."""
    store = Store.open(path)
    rng = random.Random(20)
    minute = int(T0) - int(T0) % 60
    store.add_windows(
        SightingWindow(SchemeName.GAEN, rng.randbytes(16), start, 1, -80, -80, -80, None, b"", start, start)
        for start in (minute - 60 * (i % 10_000) - 600 for i in range(HEARD_IDS))
    )
    interval = heard.rolling_start_interval_number + 60
    rpi = gaen.rpi(gaen.rpik(heard.key_data), interval)
    aem = gaen.encrypt_metadata(gaen.aemk(heard.key_data), rpi, gaen.metadata(-8))
    store.add_windows(
        SightingWindow(SchemeName.GAEN, rpi, t, 3, -62, -58, -180, None, aem, t + 1.0, t + 55.0)
        for t in range(interval * 600, interval * 600 + 600, 60)
    )
    return store


async def test_the_heard_ids_are_read_and_indexed_off_the_loop(
    tmp_path: Path, cdn: tuple[str, ec.EllipticCurvePrivateKey, PublishedKey]
) -> None:
    index_url, signer, heard = cdn
    clock = ManualClock(T0)
    store = device_store(tmp_path / "device", heard)
    costs = []
    for _ in range(3):  # the median of three: one read on a loaded machine may be quick or slow
        began = time.monotonic()
        ids, _ = HeardIds(store, SchemeName.GAEN, clock.now(), 14).get()
        costs.append(time.monotonic() - began)
        assert len(ids) == HEARD_IDS + 1
    on_loop = statistics.median(costs)  # what reading and indexing them on the loop would stall it for
    settings = SyncSettings(
        base_url="http://127.0.0.1:9",  # not asked: only the key server is synced here
        public_key=None,
        key_server=KeyServer(index_url, signer.public_key(), INFO.verification_key_id),
    )
    async with aiohttp.ClientSession() as http:
        service = SyncService(http, settings, clock, store, rng=random.Random(7))
        with LoopWatch() as watch:
            outcomes, problems = await service.sync_key_server(RiskSettings(), 0.0)
    assert ([o.matched_keys for o in outcomes], problems) == ([1], [])
    assert watch.worst < on_loop / 2, f"the loop stalled {watch.worst:.3f} s; the heard IDs take {on_loop:.3f} s"
    assert watch.ticks > 10, "the loop never ran while the heard IDs were read"
    store.close()

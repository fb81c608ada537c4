"""The backend under concurrency, on both engines: a query that waits on a database lock does not stall
the event loop (a health GET is answered meanwhile; a TAN check's read can only be held up on
PostgreSQL), and list publishers racing in two connections (as two workers do) take turns under the
advisory lock, each export file written once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import T0, RunningBackend, backend_config

from agent.clock import ManualClock
from agent.protocol import wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.server import buckets
from agent.server.database import Database, Engine
from agent.server.db import ServerStore
from agent.server.lists import Lists
from agent.server.signing import KeySigner

JSON = {"Content-Type": "application/json"}


def _hold_lock(target: str | Path, held: threading.Event, release: threading.Event, table: str = "challenges") -> None:
    """Keep a transaction open that blocks any write to ``table`` (on PostgreSQL any read too) until
    ``release``."""
    db = Database(target)
    try:
        with db.transaction():
            if db.engine is Engine.POSTGRESQL:
                db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            held.set()  # SQLite: BEGIN IMMEDIATE holds the write lock already
            release.wait(30)
    finally:
        db.close()


async def test_a_query_waiting_on_a_lock_does_not_stall_a_health_get(
    running: RunningBackend, http: aiohttp.ClientSession
) -> None:
    held, release = threading.Event(), threading.Event()
    blocker = threading.Thread(target=_hold_lock, args=(running.backend.config.database, held, release), daemon=True)
    blocker.start()
    try:
        assert await asyncio.to_thread(held.wait, 30)
        challenge = asyncio.create_task(http.post(f"{running.url}/v1/ebid/challenge"))
        await asyncio.sleep(0.2)  # let it reach the database and wait there
        async with http.get(f"{running.url}/v1/health") as r:
            assert r.status == 200
        assert not challenge.done()  # still waiting on the lock: the health GET did not wait for it
    finally:
        release.set()
    async with await challenge as r:
        assert r.status == 200
    blocker.join()


async def test_a_tan_check_waiting_on_a_lock_does_not_stall_a_health_get(
    running: RunningBackend, http: aiohttp.ClientSession, backend_engine: str
) -> None:
    """The TAN check reads the TAN off the event loop's thread, as every other query is read."""
    if backend_engine == "sqlite":
        pytest.skip("a SQLite reader in WAL mode never waits for a writer, so nothing can hold the read up")
    tan = running.backend.uploads.issue_tan().code
    held, release = threading.Event(), threading.Event()
    blocker = threading.Thread(
        target=_hold_lock, args=(running.backend.config.database, held, release, "tans"), daemon=True
    )
    blocker.start()
    try:
        assert await asyncio.to_thread(held.wait, 30)
        check = asyncio.create_task(
            http.post(f"{running.url}{wire.TAN_CHECK_PATH}", data=wire.tan_bytes(tan), headers=JSON)
        )
        await asyncio.sleep(0.2)  # let it reach the database and wait there
        async with http.get(f"{running.url}/v1/health") as r:
            assert r.status == 200
        assert not check.done()  # still waiting on the lock: the health GET did not wait for it
    finally:
        release.set()
    async with await check as r:
        assert r.status == 200, await r.text()
    blocker.join()


class _CountingSigner(KeySigner):
    """The real signer, counting how many exports are being signed at once (a boundary probe, not a mock:
    it signs as the backend does)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_at_once = 0
        self.exports = 0

    def export(self, keys: Sequence[PublishedKey], start: int, end: int) -> bytes:
        with self._lock:
            self.in_flight += 1
            self.most_at_once = max(self.most_at_once, self.in_flight)
            self.exports += 1
        try:
            threading.Event().wait(0.05)  # long enough for a racing publisher to overlap if it could
            return super().export(keys, start, end)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_two_publishers_racing_take_turns_and_write_each_file_once(tmp_path: Path) -> None:
    config = backend_config(tmp_path / "b")
    clock = ManualClock(T0 + 5 * 86_400)
    stores = [ServerStore(config.database), ServerStore(config.database)]
    bucket = config.lists.bucket_seconds
    current = buckets.current_tag_ms(clock.now(), bucket)
    tags = [current - k * bucket * 1000 for k in range(4)]
    token = b"u" * 32
    stores[0].database.execute(
        "INSERT INTO upload_tokens (hash, expires, onset_day, fake, report_type) VALUES (?, ?, NULL, 0, 1)",
        (token, 1e12),
    )
    interval = gaen.day_start_enin(gaen.enin(T0))
    keys = [(PublishedKey(bytes([i]) * 16, interval, 144, 0, 1, None), tag) for i, tag in enumerate(tags)]
    assert stores[0].publish_keys(token, clock.now(), SchemeName.GAEN, keys)
    signer = _CountingSigner(config, ec.generate_private_key(ec.SECP256R1()))
    publishers = [Lists(config, clock, store, signer) for store in stores]
    start = threading.Barrier(2)
    written: list[int] = []

    def publish(lists: Lists) -> None:
        start.wait()
        written.append(lists.publish())

    threads = [threading.Thread(target=publish, args=(p,)) for p in publishers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert signer.most_at_once == 1
        assert sorted(written) == [0, len(tags)] and signer.exports == len(tags)
        folder = config.export_dir / "gaen"
        assert len(list(folder.glob("*-00001.zip"))) == len(tags)
        assert not list(folder.glob(".*.tmp"))
    finally:
        for s in stores:
            s.close()


def test_pulls_missing_the_list_cache_together_build_the_export_once(tmp_path: Path) -> None:
    """When a bucket closes every pull misses the cache at once; the first builds the export, the others
    wait for it instead of building it again each (a national list takes seconds to build)."""
    config = backend_config(tmp_path / "b")
    clock = ManualClock(T0 + 86_400)
    store = ServerStore(config.database)
    token = b"u" * 32
    store.database.execute(
        "INSERT INTO upload_tokens (hash, expires, onset_day, fake, report_type) VALUES (?, ?, NULL, 0, 1)",
        (token, 1e12),
    )
    tag = buckets.current_tag_ms(clock.now(), config.lists.bucket_seconds)
    interval = gaen.day_start_enin(gaen.enin(T0))
    keys = [(PublishedKey(bytes([i]) * 16, interval, 144, 0, 1, None), tag) for i in range(3)]
    assert store.publish_keys(token, clock.now(), SchemeName.GAEN, keys)
    signer = _CountingSigner(config, ec.generate_private_key(ec.SECP256R1()))
    lists = Lists(config, clock, store, signer)
    lists.publish()  # the export folder written first, so only the pulls' cache builds are counted below
    signer.exports = 0
    pulls = 8
    start = threading.Barrier(pulls)
    bodies: list[bytes] = []

    def pull() -> None:
        start.wait()
        bodies.append(lists.exposed(SchemeName.GAEN, None).body)

    threads = [threading.Thread(target=pull) for _ in range(pulls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert signer.exports == 1
        assert len(bodies) == pulls and len(set(bodies)) == 1 and bodies[0]
    finally:
        store.close()

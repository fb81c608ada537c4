"""Wrong-guess limits that hold across workers: two backends on one database with one limiter secret (two
workers of one service, in this process) count one address's wrong TANs together, check-and-count is one
step (guesses sent at once cannot all pass), the window slides, a new UTC day starts afresh, and what the
database holds names no address, links no two days and carries no secret. The same with two real worker
processes is in test_server_workers."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_calls import admin_tan
from support.backend_harness import DAY, T0, RunningBackend, backend_config, running_backend
from support.postgres import BIN_DIR

from agent.clock import ManualClock
from agent.protocol import wire
from agent.server.database import Engine
from agent.server.ratelimit import WINDOW_SECONDS, new_secret

ADDRESS = "198.51.100.7"
LIMIT = 3  # tan.max_failures_per_hour in the harness
WRONG = "AAAA-BBBB-CCCC"
SECRET = new_secret()

Workers = tuple[RunningBackend, RunningBackend]


@pytest.fixture
async def workers(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[Workers]:
    config = backend_config(tmp_path / "backend", server={"trust_forwarded_for": True})
    async with (
        running_backend(config, clock, signing_key, limiter_secret=SECRET) as a,
        running_backend(config, clock, signing_key, limiter_secret=SECRET) as b,
    ):
        yield a, b


async def onset(
    http: aiohttp.ClientSession, rb: RunningBackend, tan: str, address: str = ADDRESS
) -> tuple[int, str | None]:
    """The status of a TAN exchange from ``address`` and its Retry-After."""
    async with http.post(f"{rb.url}/v1/onset", json={"tan": tan}, headers={"X-Forwarded-For": address}) as r:
        return r.status, r.headers.get("Retry-After")


def rows(rb: RunningBackend) -> list[tuple[bytes, float]]:
    return [(bytes(k), at) for k, at in rb.backend.store.database.execute("SELECT key, at FROM failed_guesses")]


async def test_wrong_tans_are_counted_together_by_two_workers(workers: Workers, http: aiohttp.ClientSession) -> None:
    a, b = workers
    good = await admin_tan(http, a)
    assert [(await onset(http, (a, b)[i % 2], WRONG))[0] for i in range(LIMIT)] == [403] * LIMIT
    for rb in (a, b):  # each worker saw fewer than the limit; together they reached it
        status, retry = await onset(http, rb, good)
        assert status == 429 and retry is not None and 3500 <= int(retry) <= 3600
    assert len(rows(a)) == LIMIT
    assert (await onset(http, b, good, "198.51.100.8"))[0] == 200  # another address is not held back


async def test_guesses_sent_at_once_are_judged_at_most_limit_times(
    workers: Workers, http: aiohttp.ClientSession
) -> None:
    a, b = workers
    answers = await asyncio.gather(*(onset(http, (a, b)[i % 2], WRONG) for i in range(3 * LIMIT)))
    assert sorted(status for status, _ in answers) == [403] * LIMIT + [429] * (2 * LIMIT)
    assert all(retry is not None and int(retry) > 0 for status, retry in answers if status == 429)
    assert len(rows(a)) == LIMIT


async def test_a_right_guess_is_not_counted(workers: Workers, http: aiohttp.ClientSession) -> None:
    a, b = workers
    good = await admin_tan(http, a)
    for i in range(2 * LIMIT):  # a TAN checked before the report: right each time, so never limited
        async with http.post(
            f"{(a, b)[i % 2].url}{wire.TAN_CHECK_PATH}", json={"tan": good}, headers={"X-Forwarded-For": ADDRESS}
        ) as r:
            assert r.status == 200
    assert rows(a) == []
    assert (await onset(http, b, WRONG))[0] == 403
    assert len(rows(a)) == 1


async def test_the_window_slides(workers: Workers, http: aiohttp.ClientSession, clock: ManualClock) -> None:
    a, b = workers
    for i in range(LIMIT):  # at T0, T0 + 1000, T0 + 2000
        assert (await onset(http, (a, b)[i % 2], WRONG))[0] == 403
        await clock.advance(1000)
    assert await onset(http, a, WRONG) == (429, "600")  # the first leaves the window at T0 + 3600
    await clock.advance(601)
    assert (await onset(http, b, WRONG))[0] == 403  # one left: room for one
    assert await onset(http, a, WRONG) == (429, "999")  # the next leaves at T0 + 1000 + 3600
    assert sorted(at for _, at in rows(a)) == [T0, T0 + 1000, T0 + 2000, T0 + 3601]
    await asyncio.to_thread(b.backend.maintain)  # maintenance drops the one out of the window
    assert sorted(at for _, at in rows(a)) == [T0 + 1000, T0 + 2000, T0 + 3601]


async def test_a_new_utc_day_starts_afresh(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "backend", server={"trust_forwarded_for": True})
    midnight = (int(T0) // DAY + 1) * DAY
    clock.set(midnight - 600)
    async with (
        running_backend(config, clock, signing_key, limiter_secret=SECRET) as a,
        running_backend(config, clock, signing_key, limiter_secret=SECRET) as b,
    ):
        good = await admin_tan(http, a)
        for i in range(LIMIT):
            assert (await onset(http, (a, b)[i % 2], WRONG))[0] == 403
        assert (await onset(http, b, good))[0] == 429
        clock.set(midnight + 1)  # within the hour, but a new day: new keys, yesterday's rows count for nobody
        assert (await onset(http, b, good))[0] == 200
        assert len(rows(a)) == LIMIT
        clock.set(midnight - 600 + WINDOW_SECONDS)
        await asyncio.to_thread(a.backend.maintain)  # maintenance drops what has left the window
        assert rows(a) == []


def _raw_database(rb: RunningBackend) -> bytes:
    """Everything the database holds, as a copy of it would: the SQLite file and its log, or a dump."""
    db = rb.backend.store.database
    if db.engine is Engine.SQLITE:
        assert db.path is not None
        return b"".join(p.read_bytes() for p in db.path.parent.glob(f"{db.path.name}*") if p.is_file())
    dump = subprocess.run([str(BIN_DIR / "pg_dump"), str(db.target)], capture_output=True, check=True, timeout=60)
    return dump.stdout


async def test_the_database_holds_no_address_no_key_of_two_days_and_no_secret(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "backend", server={"trust_forwarded_for": True})
    midnight = (int(T0) // DAY + 1) * DAY
    clock.set(midnight - 60)
    async with running_backend(config, clock, signing_key, limiter_secret=SECRET) as rb:
        assert (await onset(http, rb, WRONG))[0] == 403
        clock.set(midnight + 60)  # the same address the next day, both guesses in one window
        assert (await onset(http, rb, WRONG))[0] == 403
        stored = rows(rb)
        assert sorted(at for _, at in stored) == [midnight - 60, midnight + 60]
        keys = {key for key, _ in stored}
        assert len(keys) == 2  # one address, a different key each day
        limiter = rb.backend.uploads._limiter
        assert keys == {limiter.key(ADDRESS, midnight - 60), limiter.key(ADDRESS, midnight + 60)}
        raw = _raw_database(rb)
        assert all(key in raw or key.hex().encode() in raw for key in keys)  # the copy does hold the rows
        for secret_form in (SECRET, SECRET.hex().encode()):
            assert secret_form not in raw
        for address_form in (ADDRESS.encode(), ADDRESS.encode().hex().encode()):
            assert address_form not in raw

"""A backend that is down: the device backs off exponentially, then catches up with nothing lost."""

import asyncio
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import T0, backend_config, heard, running_backend
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.sync import BackendUnavailable, SyncError, SyncOutcome


async def test_backoff_then_catch_up(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    port = unused_port()
    config = backend_config(tmp_path / "backend")
    url = f"http://127.0.0.1:{port}"
    async with running_backend(config, clock, signing_key, port) as rb:
        a = make_device(tmp_path, "a", url, rb, http, clock, SchemeName.GAEN)
        b = make_device(tmp_path, "b", url, rb, http, clock, SchemeName.GAEN)
        contact = T0 - 19 * 3600
        a.ring.ensure(contact)
        b.store.add_windows(heard(a.ring.scheme(), contact, minutes=20))
        keys = a.client.report_keys(SchemeName.GAEN, None, T0)
        await a.client.report(SchemeName.GAEN, await issue(http, rb, "tans"), None, keys)
    # the backend is down from 10:00; its 10-12 bucket (with A's key) closes while it is down
    results: list[tuple[SyncOutcome | SyncError, float, float]] = []
    task = asyncio.create_task(
        b.client.run(SchemeName.GAEN, RiskSettings(), 0.0, lambda r, d: results.append((r, d, clock.now())))
    )

    async def next_result(count: int) -> tuple[SyncOutcome | SyncError, float, float]:
        for _ in range(500):
            if len(results) >= count:
                return results[count - 1]
            await asyncio.sleep(0.01)
        raise AssertionError("no sync attempt")

    try:
        await clock.advance(600)  # past the start-up jitter
        delays = []
        for n in range(1, 8):
            result, delay, _ = await next_result(n)
            assert isinstance(result, BackendUnavailable) and "ClientConnectorError" in result.reason
            delays.append(delay)
            if n < 7:
                await clock.advance(delay)
        for n, d in enumerate(delays):
            base = min(3600, 60 * 2**n)
            assert base <= d <= 1.25 * base  # 60, 120, 240, … capped at an hour, with up to 25 % jitter
        async with running_backend(config, clock, signing_key, port):
            await clock.advance(delays[-1])
            assert clock.now() > T0 + 7200  # A's key was released while the backend was down
            result, delay, _ = await next_result(8)
            assert isinstance(result, SyncOutcome) and result.notify and result.matched_keys == 1
            assert 7200 <= delay <= 7800  # back to the normal interval plus jitter
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [r.notify for r in b.store.exposures()] == [True]

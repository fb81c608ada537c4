"""The fixtures the server and the sync tests share: a simulated clock, a signing key, a real backend on
127.0.0.1 and an HTTP session. Each suite's conftest imports them, so pytest registers them there."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import ManualClock
from support.backend_harness import T0, RunningBackend, backend_config, running_backend


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def running(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[RunningBackend]:
    async with running_backend(backend_config(tmp_path / "backend"), clock, signing_key) as rb:
        yield rb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

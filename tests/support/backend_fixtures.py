"""The fixtures the backend's suites (server, sync, portal) share: a simulated clock, a signing key, a real
backend on 127.0.0.1 and an HTTP session, and the engine under the backend's store. tests/conftest.py
registers this module once as a plugin (``pytest_plugins``), so the fixtures are there for every test.

Every test of those suites that starts a backend runs twice, on SQLite and on PostgreSQL
(``backend_engine``): a test module using the backend harness (``backend_config``/``running_backend``) or
the ``running`` fixture gets both; ``@pytest.mark.sqlite_only`` keeps a test about the SQLite file itself
to one run. Elsewhere (the daemon, wearable, docs and packaging tests) a backend is one prop of a wider
test and runs on SQLite only, as it did when each suite's conftest imported these fixtures."""

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import ManualClock
from support.backend_harness import T0, RunningBackend, backend_config, running_backend
from support.postgres import TEST_CLUSTER_ENV, postgres_cluster

__all__ = ["backend_engine", "clock", "http", "postgres_cluster", "pytest_generate_tests", "running", "signing_key"]
ENGINES = ("sqlite", "postgresql")
TESTS = Path(__file__).resolve().parents[1]
BACKEND_SUITES = frozenset({"server", "sync", "portal"})  # the suites about the backend: both engines each


def _in_backend_suite(path: Path) -> bool:
    return any(TESTS / suite in path.resolve().parents for suite in BACKEND_SUITES)


def _uses_backend(metafunc: pytest.Metafunc) -> bool:
    if not _in_backend_suite(metafunc.definition.path):
        return False
    module = metafunc.module
    harness = any(hasattr(module, name) for name in ("backend_config", "running_backend", "open_backend"))
    return (harness or "running" in metafunc.fixturenames) and metafunc.definition.get_closest_marker(
        "sqlite_only"
    ) is None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _uses_backend(metafunc):
        metafunc.parametrize("backend_engine", ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def backend_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store's engine for this test; on PostgreSQL ``backend_config`` gives each backend a fresh database.
    Autouse, so it runs before any fixture that builds a backend config."""
    engine: str = getattr(request, "param", "sqlite")
    if engine == "postgresql":
        monkeypatch.setenv(TEST_CLUSTER_ENV, str(request.getfixturevalue("postgres_cluster").socket_dir))
    else:
        monkeypatch.delenv(TEST_CLUSTER_ENV, raising=False)
    return engine


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

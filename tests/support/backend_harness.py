"""A real backend on 127.0.0.1 for the server and sync tests: config with fast settings, a simulated
clock, a fresh signing key, and devices' sightings built the way the scanner records them."""

from __future__ import annotations

import copy
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from agent import risk
from agent.clock import Clock
from agent.schemes.base import Scheme, SchemeName
from agent.server.app import Backend, create_app, open_backend
from agent.server.config import BackendConfig, backend_config_from_dict
from agent.server.scoring import ServerRiskScorer
from agent.server.signing import KeySigner
from agent.sightings import SCAN_WINDOW_SECONDS, SightingWindow
from support.postgres import TEST_CLUSTER_ENV, database_for

T0 = 1_763_978_400.0  # 2025-11-24 10:00 UTC
DAY = 86_400
ADMIN_TOKEN = "admin-token-0123456789"
KEYS_PER_UPLOAD = 10


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for name, value in extra.items():
        out[name] = _merge(out.get(name, {}), value) if isinstance(value, dict) else value
    return out


def backend_config(data_dir: Path, **sections: dict[str, Any]) -> BackendConfig:
    """Fast test settings; the store is, when the ``backend_engine`` fixture chose PostgreSQL, the
    cluster's database for ``data_dir`` (``support.postgres.database_for``), else SQLite in ``data_dir``."""
    raw = {
        "server": {"data_dir": str(data_dir), "admin_token": ADMIN_TOKEN, "country_code": 1, "max_body_bytes": 65_536},
        "upload": {"keys_per_upload": KEYS_PER_UPLOAD, "min_response_seconds": 0},
        "ebid": {"pow_difficulty": 8},
        "tan": {"max_failures_per_hour": 3},
    }
    sockets = os.environ.get(TEST_CLUSTER_ENV)
    if sockets:
        raw["server"]["database"] = database_for(sockets, data_dir)
    return backend_config_from_dict(_merge(raw, sections))


@dataclass
class RunningBackend:
    backend: Backend
    server: TestServer
    private_key: ec.EllipticCurvePrivateKey

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


@asynccontextmanager
async def running_backend(
    config: BackendConfig,
    clock: Clock,
    private_key: ec.EllipticCurvePrivateKey,
    port: int | None = None,
    tls: ssl.SSLContext | None = None,
    limiter_secret: bytes | None = None,
) -> AsyncIterator[RunningBackend]:
    """The backend on 127.0.0.1, speaking HTTPS when given ``tls`` (``agent.server.serve.tls_context``);
    two opened on one config with one ``limiter_secret`` are two workers of one service."""
    scorer = ServerRiskScorer(risk.RiskSettings.from_dict(config.risk))
    backend = open_backend(config, clock, KeySigner(config, private_key), scorer, limiter_secret=limiter_secret)
    server = TestServer(create_app(backend), host="127.0.0.1", port=port)
    await server.start_server(ssl=tls)
    try:
        yield RunningBackend(backend, server, private_key)
    finally:
        await server.close()


def heard(
    scheme: Scheme, start: float, minutes: int, rssi: int = -60, tx_power: int = -8, keep_ecc: bool = False
) -> list[SightingWindow]:
    """What a scanner next to a device broadcasting ``scheme`` records, as the BLE scanner hands it to the
    store: one window per minute, a few callbacks each. DP-3T/GAEN keep the (encrypted) metadata; an EBID
    advert carries no TX power (the scanner records none), and its ECC is kept (as one metadata byte) only
    with ``keep_ecc``."""
    out = []
    for m in range(minutes):
        t = start + 60 * m
        b = scheme.broadcast_at(t + 1, tx_power)
        assert b is not None, "the scheme has no broadcast at that time"
        window = int(t) - int(t) % SCAN_WINDOW_SECONDS
        is_ebid = b.scheme is SchemeName.EBID
        out.append(
            SightingWindow(
                scheme=b.scheme,
                ephemeral_id=b.ephemeral_id,
                window_start=window,
                count=4,
                rssi_min=rssi - 2,
                rssi_max=rssi + 2,
                rssi_sum=4 * rssi,
                tx_power=None,
                metadata=(b.service_data[:1] if keep_ecc else b"") if is_ebid else b.service_data[16:20],
                first_seen=float(window + 1),
                last_seen=float(window + 50),
            )
        )
    return out

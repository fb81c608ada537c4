"""Devices for the sync tests: each its own store, key ring and sync client against a real backend."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent.clock import Clock
from agent.keys import KeyRing
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow
from agent.store import Store
from agent.sync import KeyServer, SyncService, SyncSettings
from support.backend_harness import ADMIN_TOKEN, RunningBackend


@dataclass
class Device:
    store: Store
    client: SyncService
    ring: KeyRing


def make_device(
    tmp_path: Path,
    name: str,
    url: str,
    rb: RunningBackend,
    http: aiohttp.ClientSession,
    clock: Clock,
    scheme: SchemeName,
    key_server: KeyServer | None = None,
) -> Device:
    store = Store.open(tmp_path / name)
    settings = SyncSettings(
        base_url=url, public_key=rb.public_key, key_server=key_server, submission_spread_seconds=0.0
    )  # a manual clock: submissions go at once (their spread is tested in tests/sync/test_sync_submissions.py)
    client = SyncService(http, settings, clock, store, rng=random.Random(7))
    return Device(store, client, KeyRing(store, scheme))


def heard_gaen_key(tek: bytes, interval: int) -> list[SightingWindow]:
    """What a device stores after hearing the phone behind a GAEN key ``tek`` for the ten minutes of
    ``interval``: one window a minute of that interval's RPI (3 packets at -62..-58 dBm, a -8 dBm TX power in
    the encrypted metadata), so the key matches with a real attenuation once it is published."""
    rpi = gaen.rpi(gaen.rpik(tek), interval)
    aem = gaen.encrypt_metadata(gaen.aemk(tek), rpi, gaen.metadata(-8))
    start = interval * 600
    return [
        SightingWindow(
            SchemeName.GAEN,
            rpi,
            start + 60 * m,
            3,
            -62,
            -58,
            -180,
            None,
            aem,
            start + 60 * m + 1.0,
            start + 60 * m + 55.0,
        )
        for m in range(10)
    ]


async def issue(http: aiohttp.ClientSession, rb: RunningBackend, what: str) -> str:
    """A TAN (``tans``) or an enrolment code (``enrolment-codes``) from the admin endpoint."""
    async with http.post(f"{rb.url}/v1/admin/{what}", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 201
        answer = await r.json()
        return answer["tan"] if what == "tans" else answer["codes"][0]

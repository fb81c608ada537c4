"""Devices for the sync tests: each its own store, key ring and sync client against a real backend."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from agent.clock import Clock
from agent.keys import KeyRing
from agent.schemes.base import SchemeName
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


async def issue(http: aiohttp.ClientSession, rb: RunningBackend, what: str) -> str:
    """A TAN (``tans``) or an enrolment code (``enrolment-codes``) from the admin endpoint."""
    async with http.post(f"{rb.url}/v1/admin/{what}", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 201
        answer = await r.json()
        return answer["tan"] if what == "tans" else answer["codes"][0]

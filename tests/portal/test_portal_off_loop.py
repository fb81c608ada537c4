"""A portal page waiting for the store does not hold up the rest of the backend: with the audit log held
locked by another connection (SQLite: ``BEGIN EXCLUSIVE``; PostgreSQL: ``LOCK TABLE`` in a second
session), the audit export waits, ``/v1/health`` on the same server still answers meanwhile, and once
the lock is released the page completes. The backend is the served command in a process of its own, so
a handler that blocks its event loop blocks only the backend, not this test."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import psycopg
import pytest
from support.postgres import TEST_CLUSTER_ENV, database_for

from agent.server.portal.accounts import Accounts, LoginPolicy
from agent.server.portal.store import PortalStore

WAIT_SECONDS = 0.5  # long enough for the page to reach the store on a loaded machine, well inside SQLite's 5 s wait
HANG_GUARD = aiohttp.ClientTimeout(total=30)  # ends the test should a blocked loop never answer (it fails then)


def _config(tmp_path: Path) -> tuple[Path, str]:
    """The served backend's config, and its database (a URL, or the SQLite file's path)."""
    data = tmp_path / "data"
    sockets = os.environ.get(TEST_CLUSTER_ENV)
    database = database_for(sockets, data) if sockets else ""
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[server]\ndata_dir = "{data}"\ndatabase = "{database}"\n'
        "[portal]\nsecure_cookies = false\nfailure_delay_seconds = 0\n"
    )
    subprocess.run([sys.executable, "-m", "agent", "backend", "keygen", "--config", str(path)], check=True)
    return path, database or str(data / "backend.db")


@contextmanager
def _served(config: Path) -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if m := re.search(r"backend listening on (http://\S+)", line):
                threading.Thread(target=server.stderr.read, daemon=True).start()  # keep the pipe drained
                yield m[1]
                break
        else:
            raise AssertionError("the backend did not start")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def _audit_log_locked(database: str) -> Iterator[None]:
    """The audit log held by another connection until the block ends."""
    if database.startswith("postgresql"):
        with psycopg.connect(database) as conn:
            conn.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()
        return
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def _log_in(http: aiohttp.ClientSession, url: str, name: str, password: str) -> None:
    async with http.get(f"{url}/portal/login") as r:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', await r.text())
        assert found
    form = {"csrf": found[1], "name": name, "password": password, "code": ""}
    async with http.post(f"{url}/portal/login", data=form) as r:
        assert r.status == 200 and r.url.path == "/portal/tans/new"


async def _status(http: aiohttp.ClientSession, url: str, read: Callable[[str], None] | None = None) -> int:
    async with http.get(url, timeout=HANG_GUARD) as r:
        if read is not None:
            read(await r.text())
        return r.status


@pytest.mark.parametrize("backend_engine", ["sqlite", "postgresql"], indirect=True)
async def test_a_page_waiting_for_the_store_leaves_the_backend_answering(tmp_path: Path) -> None:
    config, database = _config(tmp_path)
    store = PortalStore(database)
    creds = Accounts(store, LoginPolicy(5, 900)).add("ann", False, time.time())
    store.close()
    with _served(config) as url:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as officer,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as device,
        ):
            await _log_in(officer, url, "ann", creds.password)
            exported: list[str] = []
            with _audit_log_locked(database):
                page = asyncio.create_task(_status(officer, f"{url}/portal/audit.csv", exported.append))
                await asyncio.sleep(WAIT_SECONDS)  # the export now waits for the audit log
                assert await _status(device, f"{url}/v1/health") == 200
                assert not page.done()  # answered while the page still waits
            assert await page == 200
            assert "audit log exported" in exported[0]

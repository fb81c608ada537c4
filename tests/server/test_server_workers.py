"""`proxitrace backend serve --workers 2` against one PostgreSQL: both workers run, the TAN → token →
upload and the EBID registration flows pass, and one TAN sent by many clients at once (spread over the
workers) is spent exactly once. SQLite refuses several workers with one line."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from support.backend_calls import access_token, admin_tan, batch_of, exchange, register, upload
from support.backend_harness import ADMIN_TOKEN, KEYS_PER_UPLOAD, RunningBackend
from support.postgres import Cluster, database_for

from agent.protocol import wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey


@dataclass(frozen=True)
class Served:
    """A backend served by the command (the calls in ``support.backend_calls`` need only its URL)."""

    url: str
    pid: int


def _config(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\ndatabase = "{database}"\nadmin_token = "{ADMIN_TOKEN}"\n'
        f"[upload]\nkeys_per_upload = {KEYS_PER_UPLOAD}\nmin_response_seconds = 0\n"
        "[ebid]\npow_difficulty = 8\n"
        "[tan]\nmax_failures_per_hour = 100\n"  # the refused re-spends below are not what is limited here
    )
    subprocess.run([sys.executable, "-m", "agent", "backend", "keygen", "--config", str(path)], check=True)
    return path


@pytest.fixture
def two_workers(tmp_path: Path, postgres_cluster: Cluster) -> Iterator[Served]:
    config = _config(tmp_path, database_for(str(postgres_cluster.socket_dir), tmp_path / "data"))
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--port", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if m := re.search(r"listening on (http://\S+)", line):
                # keep reading its log (one line per request), or the pipe fills and the server stops
                threading.Thread(target=server.stderr.read, daemon=True).start()
                yield Served(m[1], server.pid)
                break
        else:
            raise AssertionError("the backend did not start")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def _workers(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_two_workers_pass_the_upload_and_ebid_flows_and_spend_a_tan_once(two_workers: Served) -> None:
    assert len(_workers(two_workers.pid)) == 2
    rb = cast(RunningBackend, two_workers)
    # a new connection per request, so the kernel hands requests to either worker
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        tan = await admin_tan(http, rb)
        answers = await asyncio.gather(*(exchange(http, rb, tan) for _ in range(16)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] + [403] * 15
        token = next(answer["token"] for status, answer in answers if status == 200)
        today = gaen.day_start_enin(gaen.enin(time.time()))
        keys = [PublishedKey(bytes([d]) * 16, today - d * 144, transmission_risk_level=3) for d in (1, 2)]
        body = wire.key_upload_body(SchemeName.GAEN, keys, KEYS_PER_UPLOAD, onset_day=None)
        assert (await upload(http, rb, token, body))[0] == 200
        assert (await upload(http, rb, token, body))[0] == 401  # the token was spent, whichever worker asks
        creds = await register(http, rb)
        batch = await batch_of(http, rb, await access_token(http, rb, creds))
        assert batch.entries
    assert len(_workers(two_workers.pid)) == 2  # neither worker fell over


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        'proxitrace: --workers: several workers need a shared PostgreSQL store ([server] database = "postgresql://...")'
    ]

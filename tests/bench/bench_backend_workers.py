"""The backend on PostgreSQL with 1 and 2 workers (`proxitrace backend serve --workers N`): requests/s and
p99 latency per endpoint against a pre-loaded population, each as a ratio to the same run's health GET,
and the time to publish one list file of many keys.

Run: PYTHONPATH=. python tests/bench/bench_backend_workers.py [--registrations N] [--requests R]
                                                         [--concurrency C] [--publish-keys K]
Bounded and local: a throwaway PostgreSQL cluster (``tests/support/postgres.py``, Debian's postgresql 15)
on a unix socket, the backend on 127.0.0.1. The population (registered EBID devices, each with an access
token; open TANs) is written straight into the database, as a national backend would hold it; the issue
asks for 1 M registrations, which ``--registrations`` scales down where loading them takes too long. The
client runs on the same cores as the workers, so the ratios, not the absolutes, are the figures; with 2
cores and the client on them a second worker gains less than it would on a server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support, as the test suite has it

from support.postgres import Cluster, database_for, throwaway_cluster

from agent.clock import ManualClock, day_of
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.server import buckets, codes
from agent.server.config import backend_config_from_dict
from agent.server.db import ServerStore
from agent.server.lists import Lists
from agent.server.signing import KeySigner
from agent.server.uploads import issue_tans
from agent.signing_keys import generate_signing_key

CHUNK = 5000  # rows per executemany while loading the population


async def timed(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def run(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "per_second": round(n / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def load_population(database: str, registrations: int, requests: int) -> tuple[list[str], list[str], float]:
    """Registrations with access tokens, and open TANs; (access tokens, TANs, load seconds)."""
    store = ServerStore(database)
    now = time.time()
    today = day_of(now)
    start = time.perf_counter()
    for first in range(0, registrations, CHUNK):
        rows = [
            (i + 1, f"client-{i}", os.urandom(32), os.urandom(16), -8, today)
            for i in range(first, min(first + CHUNK, registrations))
        ]
        store.database.executemany(
            "INSERT INTO registrations (id, client_id, secret_hash, puid, tx_power, seen_day) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    tokens = [f"token-{i}" for i in range(requests)]
    store.database.executemany(
        "INSERT INTO access_tokens VALUES (?, ?, ?)",
        [(codes.code_hash(t), 1 + i % registrations, now + 86_400) for i, t in enumerate(tokens)],
    )
    tans = [t.code for t in issue_tans(store, now, 86_400, None, requests)]
    loaded = time.perf_counter() - start
    store.close()
    return tokens, tans, loaded


def start_backend(tmp: Path, database: str, workers: int) -> tuple[subprocess.Popen[str], str]:
    config = tmp / "backend.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp / "data"}"\ndatabase = "{database}"\n'
        "[upload]\nmin_response_seconds = 0\n[ebid]\npow_difficulty = 8\nstatus_polls_per_day = 1000\n"
        "[portal]\nenabled = false\n"
    )
    subprocess.run(
        [sys.executable, "-m", "agent", "backend", "keygen", "--config", str(config)], check=True, capture_output=True
    )
    command = ["serve", "--config", str(config), "--port", "0", "--workers", str(workers)]
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", *command],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    for line in server.stderr:
        if m := re.search(r"listening on (http://\S+)", line):
            # keep reading its log (one line per request), or the pipe fills and the server stops
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, m[1]
    raise RuntimeError("the backend did not start")


async def measure(url: str, tokens: list[str], tans: list[str], concurrency: int) -> dict[str, dict[str, float]]:
    n = len(tokens)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def health(_i: int) -> None:
            async with http.get(f"{url}/v1/health") as r:
                assert r.status == 200

        async def status(i: int) -> None:
            async with http.post(f"{url}/v1/ebid/status", headers={"Authorization": f"Bearer {tokens[i]}"}) as r:
                assert r.status == 200, await r.text()

        async def onset(i: int) -> None:
            async with http.post(f"{url}/v1/onset", json={"tan": tans[i]}) as r:
                assert r.status == 200, await r.text()

        async def exposed(_i: int) -> None:
            async with http.get(f"{url}/v2/gaen/exposed") as r:
                assert r.status in (200, 204)

        await timed(min(n, 200), concurrency, health)  # warm up every worker's connections
        out = {"health_get": await timed(n, concurrency, health)}
        out["status_poll"] = await timed(n, concurrency, status)
        out["tan_exchange"] = await timed(n, concurrency, onset)
        out["list_pull"] = await timed(n, concurrency, exposed)
    base = out["health_get"]["per_second"]
    for figures in out.values():
        figures["ratio_to_health"] = round(figures["per_second"] / base, 3)
    return out


def publish_time(cluster: Cluster, tmp: Path, keys: int) -> dict[str, float]:
    """Seconds to write and sign one export file of ``keys`` keys (one release bucket)."""
    config = backend_config_from_dict({"server": {"data_dir": str(tmp / "pub"), "database": ""}})
    database = database_for(str(cluster.socket_dir), tmp / "pub")
    store = ServerStore(database)
    now = time.time()
    bucket = config.lists.bucket_seconds
    tag = buckets.current_tag_ms(now, bucket)
    start_enin = gaen.day_start_enin(gaen.enin(now)) - 144
    for first in range(0, keys, CHUNK):
        store.database.executemany(
            "INSERT INTO published_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (SchemeName.GAEN.value, os.urandom(16), start_enin, 144, 3, 1, None, tag)
                for _ in range(first, min(first + CHUNK, keys))
            ],
        )
    signer = KeySigner(config, generate_signing_key())
    lists = Lists(config, ManualClock(now), store, signer)
    t = time.perf_counter()
    written = lists.publish()
    seconds = time.perf_counter() - t
    size = sum(p.stat().st_size for p in (config.export_dir / "gaen").glob("*.zip"))
    store.close()
    return {"keys": keys, "files": written, "seconds": round(seconds, 2), "file_mib": round(size / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--publish-keys", type=int, default=600_000)
    args = parser.parse_args()
    results: dict[str, object] = {"registrations": args.registrations, "requests_per_endpoint": args.requests}
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for workers in (1, 2):
            run_dir = tmp / f"w{workers}"
            run_dir.mkdir()
            database = database_for(str(cluster.socket_dir), run_dir / "data")
            tokens, tans, loaded = load_population(database, args.registrations, args.requests)
            server, url = start_backend(run_dir, database, workers)
            try:
                figures = asyncio.run(measure(url, tokens, tans, args.concurrency))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            results[f"workers_{workers}"] = {"load_seconds": round(loaded, 1), **figures}
        results["list_publish"] = publish_time(cluster, tmp, args.publish_keys)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

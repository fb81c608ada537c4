"""The ingest benchmark behind ``proxitrace bench ingest``: a crowd's adverts into the real store path.

Traffic: ``peers`` devices each advertising every 250 ms, each rotating its ID every 15 minutes (at its own
offset), RSSI with noise. It times the daemon's path — SightingAggregator.add per callback and Store.flush
every 10 s of traffic (the daemon's flush interval; the flusher is a task that runs between callbacks, so
the bench checks the time once per 1 000 callbacks) — and, in the same run, the naive design it replaces:
one row per callback with indexes on ID and time, 1 000 rows per transaction in WAL mode.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.schemes.base import SchemeName
from agent.store import DB_FILE, SightingAggregator, Store

ADVERT_INTERVAL = 0.25
ROTATION = 900
FLUSH_EVERY = 10.0
CHECK_EVERY = 1000
CHUNK = 50_000
T_START = 1_780_000_000.0


@dataclass(frozen=True)
class IngestBenchResult:
    sightings: int
    peers: int
    sightings_per_s: float
    rows_written: int
    flushes: int
    bytes_per_million: float
    baseline_rows: int
    baseline_rows_per_s: float
    ratio_vs_baseline: float


def traffic(n: int, peers: int, seed: int) -> Iterator[list[tuple[SchemeName, bytes, float, int, int, bytes]]]:
    """The synthetic stream in chunks (generated outside the timed section)."""
    rng = random.Random(seed)
    base_rssi = [rng.randint(-90, -55) for _ in range(peers)]
    offsets = [rng.uniform(0, ROTATION) for _ in range(peers)]
    ids: dict[tuple[int, int], bytes] = {}
    step = ADVERT_INTERVAL / peers
    chunk: list[tuple[SchemeName, bytes, float, int, int, bytes]] = []
    for i in range(n):
        peer = i % peers
        t = T_START + i * step
        epoch = int((t + offsets[peer]) // ROTATION)
        ephid = ids.get((peer, epoch))
        if ephid is None:
            ephid = ids[(peer, epoch)] = rng.randbytes(16)
        chunk.append((SchemeName.GAEN, ephid, t, base_rssi[peer] + rng.randint(-4, 4), -8, b"\x40\xf8\x00\x00"))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_ingest_bench(
    n: int, peers: int = 200, seed: int = 1, workdir: Path | None = None, baseline_rows: int = 200_000
) -> IngestBenchResult:
    root = Path(tempfile.mkdtemp(prefix="proxitrace-bench-", dir=workdir))
    try:
        store = Store.open(root / "agent")
        agg = SightingAggregator()
        rows = flushes = 0
        elapsed = 0.0
        next_flush = T_START + FLUSH_EVERY
        for chunk in traffic(n, peers, seed):
            t0 = time.perf_counter()
            add = agg.add
            for start in range(0, len(chunk), CHECK_EVERY):
                for scheme, ephid, t, rssi, tx, meta in chunk[start : start + CHECK_EVERY]:
                    add(scheme, ephid, t, rssi, tx, meta)
                if chunk[min(start + CHECK_EVERY, len(chunk)) - 1][2] >= next_flush:
                    rows += store.flush(agg)
                    flushes += 1
                    next_flush += FLUSH_EVERY
            elapsed += time.perf_counter() - t0
        t0 = time.perf_counter()
        rows += store.flush(agg)
        elapsed += time.perf_counter() - t0
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (root / "agent" / DB_FILE).stat().st_size
        store.close()
        base_n = min(n, baseline_rows)
        base_rate = _baseline(root / "baseline.db", base_n, peers, seed)
        rate = n / elapsed
        return IngestBenchResult(
            sightings=n,
            peers=peers,
            sightings_per_s=round(rate),
            rows_written=rows,
            flushes=flushes,
            bytes_per_million=round(size / n * 1_000_000),
            baseline_rows=base_n,
            baseline_rows_per_s=round(base_rate),
            ratio_vs_baseline=round(rate / base_rate, 2),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _baseline(path: Path, n: int, peers: int, seed: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE sightings (scheme TEXT, id BLOB, time REAL, rssi INTEGER, tx_power INTEGER, metadata BLOB)"
    )
    conn.execute("CREATE INDEX by_id ON sightings (id)")
    conn.execute("CREATE INDEX by_time ON sightings (time)")
    elapsed = 0.0
    for chunk in traffic(n, peers, seed):
        rows = [(s.value, e, t, r, tx, m) for s, e, t, r, tx, m in chunk]
        t0 = time.perf_counter()
        for i in range(0, len(rows), 1000):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO sightings VALUES (?, ?, ?, ?, ?, ?)", rows[i : i + 1000])
            conn.execute("COMMIT")
        elapsed += time.perf_counter() - t0
    conn.close()
    return n / elapsed

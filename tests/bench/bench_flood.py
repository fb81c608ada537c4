"""A neighbour spraying fresh fake GAEN IDs for an hour, against the same hour without it, both in this run.

Run: python tests/bench/bench_flood.py [--minutes 60] [--rate 10000] [--peers 50] [--keys 5000]

Simulated time through the daemon's own path: every callback goes through SightingAggregator.add, a flush
into a real Store every 10 s. Prints rows per minute (max), callbacks dropped, DB size, the process's RSS
growth, and the time to match a list of ``--keys`` GAEN keys over each store, as a ratio to the baseline.
Targets: rows per minute <= FloodCap.rows_per_minute + peers, every real peer in every minute, DB growth
<= 6 MB per flooded hour, RSS growth while ingesting <= 20 MB. Matching reads every stored row, so its time
grows with the rows the cap lets in (at most 1,300 a minute), not with the flood; the ratio is printed, as
measured here it is noisy (a shared host).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from agent.bench.match import synthesize
from agent.matching import SightingIndex, match_gaen
from agent.schemes.base import SchemeName
from agent.store import FloodCap, SightingAggregator, Store

T0 = 20_400 * 86_400  # the matching bench's day, so its keys apply
TICK = 0.25
FLUSH_S = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def real_id(peer: int, t: float) -> bytes:
    return peer.to_bytes(4, "big") + int((t + peer * 97) // 600).to_bytes(12, "big")


def hour(state: Path, minutes: int, rate: int, peers: int, n_keys: int) -> dict[str, float]:
    store = Store.open(state)
    agg = SightingAggregator()
    per_tick = int(rate * TICK)
    fake = 1 << 100
    rss0, began = rss_bytes(), time.perf_counter()
    for step in range(int(minutes * 60 / TICK)):
        t = T0 + step * TICK
        for _ in range(per_tick):
            fake += 1
            agg.add(SchemeName.GAEN, fake.to_bytes(16, "big"), t, -70, None, b"")
        for peer in range(peers):
            agg.add(SchemeName.GAEN, real_id(peer, t), t, -60, -8, b"")
        if (step + 1) % int(FLUSH_S / TICK) == 0:
            store.flush(agg)
    store.flush(agg)
    took = time.perf_counter() - began
    rss_growth = rss_bytes() - rss0  # ingest only: matching's index is reported with its time
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn = store.db.conn
    max_rows = conn.execute("SELECT max(c) FROM (SELECT count(*) c FROM sightings GROUP BY window_start)").fetchone()
    peer_minutes = sum(
        1
        for peer in range(peers)
        for m in range(minutes)
        if conn.execute(
            "SELECT 1 FROM sightings WHERE id IN (?, ?) AND window_start = ?",
            (real_id(peer, T0 + m * 60), real_id(peer, T0 + m * 60 + 59.75), T0 + m * 60),
        ).fetchone()
    )
    keys, _ = synthesize(SchemeName.GAEN, n_keys, 0, 0, seed=3)
    m0 = time.perf_counter()
    index = SightingIndex(store.windows(scheme=SchemeName.GAEN, since=T0))
    match_gaen(keys, index)
    match_s = time.perf_counter() - m0
    out = {
        "callbacks": int(minutes * 60 / TICK) * (per_tick + peers),
        "ingest_s": round(took, 1),
        "rows": conn.execute("SELECT count(*) FROM sightings").fetchone()[0],
        "max_rows_per_minute": max_rows[0],
        "peer_minutes_heard": peer_minutes,
        "peer_minutes": peers * minutes,
        "dropped_callbacks": agg.flood_dropped,
        "db_bytes": store.size_bytes(),
        "rss_growth_bytes": rss_growth,
        "match_s": round(match_s, 3),
    }
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--rate", type=int, default=10_000, help="fake IDs per second")
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--keys", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = hour(Path(tmp) / "baseline", args.minutes, 0, args.peers, args.keys)
        flood = hour(Path(tmp) / "flood", args.minutes, args.rate, args.peers, args.keys)
    cap = FloodCap()
    print(json.dumps({"cap_rows_per_minute": cap.rows_per_minute, "baseline": base, "flood": flood}, indent=1))
    print(
        f"flood of {args.rate}/s for {args.minutes} min: rows/min max {flood['max_rows_per_minute']} "
        f"(cap {cap.rows_per_minute} + {args.peers} peers), peers heard {flood['peer_minutes_heard']}/"
        f"{flood['peer_minutes']} minutes, {flood['dropped_callbacks']} callbacks dropped; DB "
        f"{flood['db_bytes'] / 1e6:.1f} MB vs {base['db_bytes'] / 1e6:.1f} MB baseline; RSS growth "
        f"{flood['rss_growth_bytes'] / 1e6:.1f} MB vs {base['rss_growth_bytes'] / 1e6:.1f} MB; matching "
        f"{flood['match_s']:.2f} s vs {base['match_s']:.2f} s = {flood['match_s'] / max(base['match_s'], 1e-9):.1f}x"
    )


if __name__ == "__main__":
    main()

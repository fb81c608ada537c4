"""Where the store's bytes go, day by day: the soak's daily volume through the real Store, without a radio.

Run: python tests/bench/bench_retention.py [--days 14] [--retention-days 3] [--flush-seconds 1200]
The soak's schedule (``agent.testbed.soak.Schedule``: 50 peers, fewer at weekends, an ID per peer per hour,
two sightings a peer a minute) is folded by the real aggregator and flushed every ``--flush-seconds`` of
simulated time (1200: the soak's 2-s flush at 600x); retention runs daily as the daemon runs it. For each day
it prints the largest DB + WAL seen at the hourly samples and what made it up: the DB and WAL files, the pages
of the sightings table and of its index (SQLite's dbstat), free pages and rows; then the same growth figure
the soak prints (first day retention bites to the largest day after it), the largest size seen while
retention itself ran, and how long the daemon's loop waits for retention (its longest step) against the
whole run. Issue 19's cause was found with it: the WAL kept the size of retention's one big
transaction, and the figure climbed while the pages per row stayed put.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from agent.clock import DAY
from agent.schemes.base import SchemeName
from agent.store import DB_FILE, SightingAggregator, Store
from agent.testbed.soak import HOUR, MINUTE, Schedule

T0 = 1_797_033_600  # a UTC midnight
PEERS = 50
RETENTION_OFFSET_S = 300  # the daemon's first retention runs a few simulated minutes after it starts


def breakdown(store: Store, state: Path) -> dict[str, int]:
    conn = store.db.conn
    pages = dict(conn.execute("SELECT name, count(*) FROM dbstat GROUP BY name").fetchall())
    db, wal = (state / DB_FILE).stat().st_size, (state / (DB_FILE + "-wal")).stat().st_size
    return {
        "total": db + wal,
        "db": db,
        "wal": wal,
        "rows": conn.execute("SELECT count(*) FROM sightings").fetchone()[0],
        "free_pages": conn.execute("PRAGMA freelist_count").fetchone()[0],
        "table_pages": pages.get("sightings", 0),
        "index_pages": pages.get("sightings_by_window", 0),
    }


def run(days: int, retention_days: int, flush_s: int, state: Path) -> None:
    store = Store.open(state)
    agg = SightingAggregator()
    schedule = Schedule(PEERS, 19)
    rng = random.Random(19)
    ids: dict[int, tuple[bytes, int]] = {}
    daily: dict[int, dict[str, int]] = {}
    retention_peak = 0
    runs: list[tuple[float, float]] = []  # (whole retention run, its longest step) in seconds
    files = [state / DB_FILE, state / (DB_FILE + "-wal")]

    def watch(_statement: str) -> None:
        nonlocal retention_peak
        retention_peak = max(retention_peak, sum(f.stat().st_size for f in files))

    next_flush, next_retention = flush_s, RETENTION_OFFSET_S
    for minute in range(days * 1440):
        t = minute * MINUTE
        for peer in range(PEERS):
            if not schedule.present(peer, t):
                ids.pop(peer, None)
                continue
            if peer not in ids or t - ids[peer][1] >= HOUR:
                ids[peer] = (rng.randbytes(16), t)
            for offset in (10, 40):
                agg.add(SchemeName.GAEN, ids[peer][0], T0 + t + offset, -60, -8, b"\x01\x02\x03\x04")
        if t + MINUTE >= next_flush:
            store.flush(agg)
            next_flush += flush_s
        if t >= next_retention:
            store.db.conn.set_trace_callback(watch)
            steps = []
            began = mark = time.perf_counter()
            for _ in store.retention_steps(T0 + t, retention_days):
                steps.append(time.perf_counter() - mark)
                mark = time.perf_counter()
            runs.append((time.perf_counter() - began, max(steps)))
            store.db.conn.set_trace_callback(None)
            watch("")
            next_retention += DAY
        if minute % 60 == 0:
            now = breakdown(store, state)
            day = minute // 1440
            if now["total"] > daily.get(day, {"total": 0})["total"]:
                daily[day] = now
    store.close()
    print("day  DB+WAL MB   DB MB  WAL MB    rows  table pg  index pg  free pg")
    for day, f in sorted(daily.items()):
        print(
            f"{day:3d} {f['total'] / 1e6:10.2f} {f['db'] / 1e6:7.2f} {f['wal'] / 1e6:7.2f} {f['rows']:7d}"
            f" {f['table_pages']:9d} {f['index_pages']:9d} {f['free_pages']:8d}"
        )
    bitten = retention_days + 1
    if days - 1 > bitten:
        first = daily[bitten]["total"]
        peak = max(daily[d]["total"] for d in range(bitten + 1, days))
        print(f"peak growth after retention bites (day {bitten} -> largest later day): {(peak - first) / first:+.4f}")
    print(f"largest DB + WAL while retention ran: {retention_peak / 1e6:.2f} MB")
    whole, step = max(runs)
    print(
        f"longest retention run {whole * 1e3:.1f} ms; the daemon's loop waits at most its longest step,"
        f" {step * 1e3:.1f} ms ({step / whole:.2f} of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--retention-days", type=int, default=3)
    parser.add_argument("--flush-seconds", type=int, default=1200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proxitrace-retention-") as tmp:
        run(args.days, args.retention_days, args.flush_seconds, Path(tmp))


if __name__ == "__main__":
    main()

"""Trace replay throughput (rows/s) against parsing the same trace's CSV alone, measured in the same run.

Run: python tests/bench/bench_replay.py [--people N] [--hours H] [--scheme gaen|dp3t]
The trace is synthetic (N people in a room, one advert per second per pair that is in range); replay's
cost is what it does per row (the scheme's ID, the decoder, the aggregator) plus the store and matching.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import tempfile
import time
from pathlib import Path

from agent.schemes.base import SchemeName
from agent.testbed.replay import ReplaySettings, replay
from agent.testbed.trace import ScanBehaviour, Trace, TraceRow, format_trace, parse_trace

START = 1_772_438_400.0  # 2026-03-02 UTC


def synthetic(people: int, hours: float, seed: int = 1) -> str:
    rng = random.Random(seed)
    spots = {f"p{i}": (rng.uniform(0, 10), rng.uniform(0, 10)) for i in range(people)}
    rows = []
    for second in range(int(hours * 3600)):
        for rx, (x0, y0) in spots.items():
            for tx, (x1, y1) in spots.items():
                d = ((x0 - x1) ** 2 + (y0 - y1) ** 2) ** 0.5
                if rx != tx and d < 6 and rng.random() < 0.5:
                    rows.append(
                        TraceRow(START + second, rx, tx, round(-60 - 20 * d / 6 + rng.gauss(0, 4)), -8, "", "", d)
                    )
    return "".join(format_trace(Trace(ScanBehaviour(), tuple(rows))))


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--scheme", choices=["gaen", "dp3t"], default="gaen")
    args = parser.parse_args()
    text = synthetic(args.people, args.hours)
    rows = text.count("\n") - 2
    baseline = best_of(lambda: sum(1 for _ in csv.reader(io.StringIO(text))))
    parse = best_of(lambda: parse_trace(text))
    trace = parse_trace(text)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ReplaySettings(SchemeName(args.scheme))
        replayed = best_of(lambda: replay(trace, settings, Path(tmp)), repeat=1)
    report = {
        "rows": rows,
        "csv_reader_rows_per_s": round(rows / baseline),
        "parse_trace_rows_per_s": round(rows / parse),
        "replay_rows_per_s": round(rows / replayed),
        "replay_and_parse_rows_per_s": round(rows / (replayed + parse)),
        "ratio_replay_vs_csv_reader": round(baseline / replayed, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

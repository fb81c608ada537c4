"""Ingest speed and size of the store against one-row-per-callback SQLite, measured in the same run.

Run: python tests/bench/bench_ingest.py [--sightings N] [--peers P]
Targets: >= 10x the baseline's rows/s, <= 2 MiB on disk per million sightings.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from agent.bench.ingest import run_ingest_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sightings", type=int, default=1_000_000)
    parser.add_argument("--peers", type=int, default=200)
    args = parser.parse_args()
    result = run_ingest_bench(args.sightings, args.peers)
    report = {
        **asdict(result),
        "mib_per_million": round(result.bytes_per_million / 1_048_576, 3),
        "targets": {"ratio_vs_baseline": 10, "mib_per_million": 2},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

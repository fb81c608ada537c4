"""Matching speed as a ratio to the native floor (floor.c), both measured in this run.

Run: python tests/bench/bench_match.py --floor-source PATH/TO/floor.c [--keys N] [--sightings M]
The floor is built with gcc and libcrypto (libssl-dev) at the build line given in its header. The
targets: GAEN >= 0.25 x the native full match, DP-3T >= 0.2 x, on one core; with --workers 2 the
script also shows how the Python matcher scales over two processes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

from agent.bench.match import as_dict, run_match_bench
from agent.schemes.base import SchemeName


def native_rates(source: Path, keys: int, sightings: int) -> dict[str, float]:
    binary = Path(tempfile.mkdtemp()) / "floor"
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(source), "-lcrypto", "-Wno-deprecated-declarations"], check=True
    )
    out = subprocess.run(
        [str(binary), str(keys), str(sightings), "3"], check=True, capture_output=True, text=True
    ).stdout
    rates = {}
    for name in ("gaen_full_native_match", "dp3t_full_native_match"):
        m = re.search(rf"^{name}\S*\s+median\s+[\d.]+ ns/key\s+(\d+) keys/s", out, re.M)
        if not m:
            raise SystemExit(f"could not read {name} from the floor's output:\n{out}")
        rates[name.split("_")[0]] = float(m.group(1))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor-source", type=Path, required=True)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--sightings", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    native = native_rates(args.floor_source, args.keys, args.sightings)
    report = {}
    for scheme, target in (("gaen", 0.25), ("dp3t", 0.2)):
        rows = {}
        for workers in sorted({1, args.workers}):
            r = run_match_bench(SchemeName(scheme), args.keys, args.sightings, workers=workers)
            rows[f"workers_{workers}"] = {
                **as_dict(r),
                "ratio_to_native": round(r.key_days_per_s / native[scheme], 3),
            }
        report[scheme] = {"native_keys_per_s": native[scheme], "target_ratio": target, **rows}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

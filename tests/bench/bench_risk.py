"""Benchmark: sighting windows → exposure windows → SwissCovid and CWA assessments.

Workload: 200 matched keys, each seen for 45 minutes a day on 14 days (126,000 sighting windows, the
upper end of what a busy wearable keeps over the retention period). Baseline, measured in the same run:
sorting the same sighting windows by start time, a pass any consumer of them has to make anyway.
Run from the worktree: PYTHONPATH=. /opt/ptvenv/bin/python tests/bench/bench_risk.py
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from agent.risk import CwaModel, ExposureWindow, SwissCovidModel, exposure_windows_from_sightings
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow

KEYS, DAYS, MINUTES = 200, 14, 45
FIRST_DAY = 19_783


def workload(rng: random.Random) -> list[list[SightingWindow]]:
    keys = []
    for k in range(KEYS):
        windows = []
        for d in range(DAYS):
            start = (FIRST_DAY + d) * 86_400 + rng.randrange(0, 23 * 3600, 60)
            for m in range(MINUTES):
                rssi = rng.randint(-95, -40)
                count = rng.randint(1, 40)
                t = start + m * 60
                windows.append(
                    SightingWindow(
                        SchemeName.GAEN,
                        k.to_bytes(16, "big"),
                        t,
                        count,
                        rssi - 3,
                        rssi + 3,
                        rssi * count,
                        None,
                        b"",
                        t,
                        t + 59,
                    )
                )
        keys.append(windows)
    return keys


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    keys = workload(random.Random(7))
    flat = [w for key in keys for w in key]
    config = json.loads((Path(__file__).resolve().parent.parent / "data" / "cwa_risk_cases.json").read_text())
    cwa = CwaModel.from_dict(config["inputs"]["defaultRiskCalculationConfiguration"])
    swiss = SwissCovidModel()
    built: list[ExposureWindow] = []

    def build() -> None:
        built.clear()
        for key in keys:
            built.extend(exposure_windows_from_sightings(key, tx_power=-10))

    baseline = best_of(3, lambda: sorted(flat, key=lambda w: w.window_start))
    t_build = best_of(3, build)
    t_swiss = best_of(3, lambda: swiss.assess(built))
    t_cwa = best_of(3, lambda: cwa.assess(built))
    t_explain = best_of(3, lambda: json.dumps(swiss.assess(built).explain().to_dict()))
    n = len(flat)
    print(f"{n} sighting windows -> {len(built)} exposure windows ({KEYS} keys x {DAYS} days x {MINUTES} min)")
    print(f"baseline sort by window_start: {baseline * 1e3:8.1f} ms  (1.00x)")
    for name, t in (
        ("build exposure windows", t_build),
        ("SwissCovid assess", t_swiss),
        ("CWA assess", t_cwa),
        ("SwissCovid assess + explain JSON", t_explain),
    ):
        print(f"{name:31s}: {t * 1e3:8.1f} ms  ({t / baseline:5.1f}x baseline, {n / t / 1e3:7.0f} k sightings/s)")


if __name__ == "__main__":
    main()

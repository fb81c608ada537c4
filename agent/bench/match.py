"""The matching benchmark behind ``proxitrace bench match``: synthetic lists against synthetic sightings.

It times the functions the daemon runs (SightingIndex and match_gaen/match_dp3t), on keys and sighting
windows shaped like a real day's, with a known number of planted true matches so a fast but wrong matcher
shows up as found != planted.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from agent.matching import KeyMatch, SightingIndex, match_dp3t, match_gaen
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow

TODAY = 20_400  # a fixed UTC day number, so runs are comparable


@dataclass(frozen=True)
class MatchBenchResult:
    scheme: str
    keys: int
    sightings: int
    workers: int
    planted: int
    found: int
    index_build_s: float
    match_s: float
    keys_per_s: float
    key_days_per_s: float


def _window(scheme: SchemeName, ephid: bytes, t: float) -> SightingWindow:
    start = int(t) - int(t) % 60
    return SightingWindow(scheme, ephid, start, 3, -75, -62, -205, None, b"", float(t), float(t) + 40)


def synthesize(
    scheme: SchemeName, n_keys: int, n_sightings: int, planted: int, seed: int, days_back: int = 0
) -> tuple[list[PublishedKey], list[SightingWindow]]:
    """Keys published for the last ``days_back``+1 days, sightings spread over them, ``planted`` true hits."""
    rng = random.Random(seed)
    key_len = gaen.TEK_LEN if scheme is SchemeName.GAEN else dp3t.SK_LEN
    keys = [
        PublishedKey(rng.randbytes(key_len), (TODAY - rng.randint(0, days_back)) * gaen.ROLLING_PERIOD)
        for _ in range(n_keys)
    ]
    first_t, last_t = (TODAY - days_back) * 86400, (TODAY + 1) * 86400 - 1
    windows = [_window(scheme, rng.randbytes(16), rng.uniform(first_t, last_t)) for _ in range(n_sightings)]
    for i, k in enumerate(rng.sample(range(n_keys), min(planted, n_keys, n_sightings))):
        key = keys[k]
        if scheme is SchemeName.GAEN:
            interval = key.rolling_start_interval_number + rng.randrange(gaen.ROLLING_PERIOD)
            ephid, t = gaen.rpi(gaen.rpik(key.key_data), interval), interval * 600 + rng.uniform(0, 599)
        else:
            day = key.rolling_start_interval_number // gaen.ROLLING_PERIOD
            ephid = rng.choice(dp3t.ephids(key.key_data))
            t = day * 86400 + rng.uniform(0, 86399)
        windows[i] = _window(scheme, ephid, t)
    return keys, windows


def _run(scheme: SchemeName, keys: Sequence[PublishedKey], index: SightingIndex) -> list[KeyMatch]:
    if scheme is SchemeName.GAEN:
        return match_gaen(keys, index)
    return match_dp3t(keys, index, today=TODAY)


def run_match_bench(
    scheme: SchemeName,
    n_keys: int,
    n_sightings: int,
    planted: int = 10,
    workers: int = 1,
    seed: int = 1,
    days_back: int = 0,
) -> MatchBenchResult:
    keys, windows = synthesize(scheme, n_keys, n_sightings, planted, seed, days_back)
    t0 = time.perf_counter()
    index = SightingIndex(windows)
    t1 = time.perf_counter()
    found = len(_run(scheme, keys, index)) if workers <= 1 else _run_forked(scheme, keys, index, workers)
    t2 = time.perf_counter()
    key_days = n_keys
    if scheme is SchemeName.DP3T:
        key_days = sum(TODAY - k.rolling_start_interval_number // gaen.ROLLING_PERIOD + 1 for k in keys)
    return MatchBenchResult(
        scheme=scheme.value,
        keys=n_keys,
        sightings=n_sightings,
        workers=workers,
        planted=min(planted, n_keys, n_sightings),
        found=found,
        index_build_s=round(t1 - t0, 4),
        match_s=round(t2 - t1, 4),
        keys_per_s=round(n_keys / (t2 - t1), 1),
        key_days_per_s=round(key_days / (t2 - t1), 1),
    )


def _run_forked(scheme: SchemeName, keys: Sequence[PublishedKey], index: SightingIndex, workers: int) -> int:
    """Split the keys over forked workers; the index is shared copy-on-write, never pickled."""
    ctx = multiprocessing.get_context("fork")
    chunk = -(-len(keys) // workers)
    results = ctx.SimpleQueue()
    procs = [
        ctx.Process(target=lambda part=keys[i : i + chunk]: results.put(len(_run(scheme, part, index))))
        for i in range(0, len(keys), chunk)
    ]
    for p in procs:
        p.start()
    total = sum(results.get() for _ in procs)
    for p in procs:
        p.join()
    return total


def as_dict(result: MatchBenchResult) -> dict[str, object]:
    return {**asdict(result), "cpu_count": os.cpu_count()}

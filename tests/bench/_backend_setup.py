"""What the backend benchmarks share (``bench_backend.py``, ``bench_backend_workers.py``): timing a batch of
requests, ``concurrency`` at a time, into a rate and latency percentiles. One home, so both report the
same figures computed the same way and a ratio between their runs means something."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence


def percentile_ms(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank below) of sorted latencies in seconds, as milliseconds."""
    if not ordered:
        return 0.0
    return round(1000 * ordered[int(q * (len(ordered) - 1))], 2)


def latency_figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": percentile_ms(ordered, 0.5),
        "p95_ms": percentile_ms(ordered, 0.95),
        "p99_ms": percentile_ms(ordered, 0.99),
    }


async def timed(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    """Run ``one(i)`` for i < n, ``concurrency`` at a time (a closed loop: the next request goes when one
    ends, so this measures what the server sustains); rate and latency percentiles."""
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
    return {"count": n, "per_second": round(n / elapsed, 1), **latency_figures(latencies)}

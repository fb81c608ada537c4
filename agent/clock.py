"""The one source of time for every component.

Contact tracing is all about time windows (ID validity, scan windows, retention, release buckets), and the
test-bed runs days in minutes. So nothing reads the wall clock directly: components take a ``Clock`` and
the daemon, the tests and the simulator choose which one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from typing import Protocol

DAY = 86_400
"""Seconds in a UTC day: the unit of key schedules, retention, risk days and rate-limit days alike."""

_EPOCH = dt.date(1970, 1, 1)


def day_of(unix_seconds: float) -> int:
    """The UTC day number (days since 1970-01-01) that ``unix_seconds`` falls in."""
    return int(unix_seconds // DAY)


def start_of_day(day: int) -> int:
    """Unix seconds at 00:00 UTC of day number ``day``."""
    return day * DAY


def day_to_date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def day_to_iso(day: int) -> str:
    """``YYYY-MM-DD`` of a day number: how days are shown to people and sent on the wire."""
    return day_to_date(day).isoformat()


def date_to_day(date: dt.date) -> int:
    return (date - _EPOCH).days


class Clock(Protocol):
    """Unix time in seconds (UTC), and a sleep that follows the same time base."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Simulated time that runs ``speed`` times faster than real time from ``start``.

    Used by the test-bed and by agents running under it as separate processes: every process given the
    same (start, origin, speed) agrees on the simulated time without talking to each other.
    """

    def __init__(self, start: float, speed: float = 1.0, origin: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self.origin = time.time() if origin is None else origin

    def now(self) -> float:
        return self.start + (time.time() - self.origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def spec(self) -> str:
        """A string another process can hand to ``clock_from_spec`` to share this clock."""
        return f"accelerated:{self.start!r}:{self.speed!r}:{self.origin!r}"


class ManualClock:
    """Simulated time that moves only when a test calls ``advance``; sleepers wake in time order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def set(self, t: float) -> None:
        self._now = t

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline and letting it run.

        Before each step the loop is allowed to settle, so tasks that are about to sleep register their
        deadline before time moves past it.
        """
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def clock_from_spec(spec: str | None) -> Clock:
    """A clock from a config/CLI string: ``system`` (default) or ``accelerated:START:SPEED[:ORIGIN]``."""
    if not spec or spec == "system":
        return SystemClock()
    kind, _, rest = spec.partition(":")
    if kind == "accelerated":
        parts = rest.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad clock spec {spec!r}: want accelerated:START:SPEED[:ORIGIN]")
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"bad clock spec {spec!r}: {exc}") from None
        return AcceleratedClock(values[0], values[1], values[2] if len(values) == 3 else None)
    raise ValueError(f"unknown clock kind {kind!r} (want system or accelerated)")

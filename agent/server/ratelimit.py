"""Per-client-address limits on failed guesses, kept in memory only and under a daily salt.

Rate limiting needs to recognise an address for an hour, not to know it: the limiter keys on
HMAC-SHA256(salt of the day, address), the salt is random, lives only in this process and is replaced
at each UTC midnight together with every counter, so no address (nor a stable hash of one) is written
anywhere or outlives the day.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import deque
from collections.abc import Callable

from agent.clock import Clock, day_of

_PRUNE_MIN = 1024


class FailureLimiter:
    """At most ``limit`` failures per ``window`` seconds per address; further attempts are refused until
    the oldest failure leaves the window."""

    def __init__(
        self, clock: Clock, limit: int, window: float, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._random = random_bytes
        self._day = -1
        self._salt = b""
        self._failures: dict[bytes, deque[float]] = {}
        self._prune_at = _PRUNE_MIN
        self._lock = threading.Lock()  # requests are served from worker threads (agent.server.app)

    def _key(self, address: str) -> bytes:
        day = day_of(self._clock.now())
        if day != self._day:
            self._day, self._salt = day, self._random(32)
            self._failures.clear()
        return hmac.new(self._salt, address.encode(), hashlib.sha256).digest()[:16]

    def _recent(self, key: bytes) -> deque[float]:
        now = self._clock.now()
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may try now."""
        with self._lock:
            return self._retry_after(address)

    def _retry_after(self, address: str) -> float | None:
        times = self._recent(self._key(address))
        if len(times) < self._limit:
            return None
        return max(1.0, times[0] + self._window - self._clock.now())

    def failed(self, address: str) -> None:
        with self._lock:
            self._failed(address)

    def _failed(self, address: str) -> None:
        key = self._key(address)
        self._recent(key)
        self._failures.setdefault(key, deque()).append(self._clock.now())
        if len(self._failures) > self._prune_at:
            for stale in list(self._failures):
                self._recent(stale)
            self._prune_at = max(_PRUNE_MIN, 2 * len(self._failures))

    def __len__(self) -> int:
        """Addresses currently tracked (for tests and the memory bound)."""
        return len(self._failures)

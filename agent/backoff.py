"""The one retry schedule: exponential backoff with a ceiling.

Every component that retries something outside its control (BlueZ, the backend, a federation peer, a
task that died) waits ``initial · 2^(attempt-1)`` seconds up to ``maximum``, so a fault that persists costs
a bounded number of attempts an hour and a brief one is retried at once. Jitter, where a herd of devices
could synchronise, is the caller's to add on top.
"""

from __future__ import annotations


def backoff_delay(attempt: int, initial: float = 1.0, maximum: float = 60.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
    return min(maximum, initial * 2.0 ** max(0, attempt - 1))

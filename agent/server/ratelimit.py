"""Per-client-address limits on guesses, counted in the database so that they hold across workers, under
keys that name no address and change at every UTC midnight.

Rate limiting needs to recognise an address for an hour, not to know it. The process that serves draws a
random secret in memory (``new_secret``; ``serve_workers`` draws it in the parent before it forks, so every
worker holds the same one) and never writes it anywhere. A row's key is
HMAC-SHA256(day key, limiter name ‖ address)[:16], the day key HMAC-SHA256(secret, UTC day): without the
secret a key cannot be tested against any address, and one address gets unrelated keys on two days and in
two limiters, so the table names no address and links no day (nor endpoint) to another. A restart draws a
new secret, and counts start afresh, as they did when they were kept in memory.

Checking and counting are one step, so N guesses from one address at once, on any number of workers,
cannot all pass the check: ``attempt`` counts the guess before it is judged (a row, under a per-key lock
held for that transaction), or refuses when the window already holds ``limit``; a guess found right
drops its row, a wrong one keeps it. A worker that dies mid-guess leaves its row: counted as a failure,
never as a free guess.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from agent.clock import Clock, day_of
from agent.server.errors import too_many

WINDOW_SECONDS = 3600.0
"""The window of every limiter: the config's limits are per hour (``tan.max_failures_per_hour``,
``ebid.challenges_per_client_per_hour``), and one window for all lets maintenance prune the shared table
by age alone (a row says nothing of the limiter it belongs to)."""
SECRET_LEN = 32
KEY_LEN = 16


def new_secret() -> bytes:
    """A limiter secret for the process that serves: random, in memory only."""
    return os.urandom(SECRET_LEN)


class GuessStore(Protocol):
    """Where guesses are counted (``agent.server.db.ServerStore``)."""

    def reserve_guess(self, key: bytes, now: float, since: float, limit: int) -> tuple[int | None, float]: ...

    def release_guess(self, row: int) -> None: ...


class Guess:
    """One guess being judged: ``wrong()`` keeps it counted; otherwise it is dropped when judged."""

    def __init__(self) -> None:
        self.is_wrong = False

    def wrong(self) -> None:
        self.is_wrong = True


class FailureLimiter:
    """At most ``limit`` wrong guesses per ``WINDOW_SECONDS`` per address; further attempts are refused
    (429, with the seconds until the oldest one leaves the window) whatever they carry."""

    def __init__(self, clock: Clock, store: GuessStore, secret: bytes, name: str, limit: int) -> None:
        self._clock = clock
        self._store = store
        self._secret = secret
        self._name = name.encode() + b"\0"
        self._limit = limit

    def key(self, address: str, now: float) -> bytes:
        """The row key of ``address`` on the UTC day of ``now`` (public for the tests of what is stored)."""
        day_key = hmac.new(self._secret, str(day_of(now)).encode(), hashlib.sha256).digest()
        return hmac.new(day_key, self._name + address.encode(), hashlib.sha256).digest()[:KEY_LEN]

    def _reserve(self, address: str, what: str) -> int:
        now = self._clock.now()
        row, oldest = self._store.reserve_guess(self.key(address, now), now, now - WINDOW_SECONDS, self._limit)
        if row is None:
            raise too_many(oldest + WINDOW_SECONDS - now, what)
        return row

    @contextmanager
    def attempt(self, address: str, what: str) -> Iterator[Guess]:
        """Count a guess from ``address`` while the block judges it, or refuse it with a 429 that names
        ``what`` was guessed too often. A block that ends without calling ``wrong()`` (the guess was right,
        or refused for some other reason) drops the count."""
        row = self._reserve(address, what)
        guess = Guess()
        try:
            yield guess
        finally:
            if not guess.is_wrong:
                self._store.release_guess(row)

    def count(self, address: str, what: str) -> None:
        """Count a request that costs a try whatever its outcome (a registration challenge), or refuse it."""
        self._reserve(address, what)

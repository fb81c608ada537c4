"""Proof of work for EBID registration: SHA-256(challenge ‖ nonce) must start with ``difficulty`` zero bits.

It makes mass registration (and so hoarding of pseudonyms) cost CPU time while a real device pays once.
Shared by the server (check) and the agent (solve), so both sides agree on the byte layout.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

NONCE_LEN = 8
MAX_DIFFICULTY = 32
"""The hardest proof of work a backend may ask for and a device will try: 2**32 hashes are minutes on a
Pi, anything harder is a server spinning its clients (difficulty 64 would never end)."""
_PROGRESS_EVERY = 1 << 14


class ProofOfWorkTimeout(Exception):
    """The deadline passed before a nonce was found."""


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def meets(challenge: bytes, nonce: int, difficulty: int) -> bool:
    if not 0 <= nonce < 1 << (8 * NONCE_LEN):
        return False
    digest = hashlib.sha256(challenge + nonce.to_bytes(NONCE_LEN, "big")).digest()
    return leading_zero_bits(digest) >= difficulty


def solve(
    challenge: bytes,
    difficulty: int,
    progress: Callable[[int], None] | None = None,
    start: int = 0,
    deadline: float | None = None,
) -> int:
    """The first nonce from ``start`` that meets the difficulty; ``progress(tries)`` every 16384 tries
    (expected tries: 2**difficulty). ``deadline`` (``time.monotonic``) bounds the search, checked with
    the progress: it runs in a worker thread that nothing else can stop, so it must stop itself."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"proof-of-work difficulty must be between 0 and {MAX_DIFFICULTY}, got {difficulty}")
    prefix = hashlib.sha256(challenge)
    full, rest = divmod(difficulty, 8)
    zero = bytes(full)
    limit = 1 << (8 - rest)  # the byte after the zero bytes must be below this
    nonce = start
    while True:
        h = prefix.copy()
        h.update(nonce.to_bytes(NONCE_LEN, "big"))
        d = h.digest()
        if d[:full] == zero and (rest == 0 or d[full] < limit):
            return nonce
        nonce += 1
        if not (nonce - start) % _PROGRESS_EVERY:
            if progress is not None:
                progress(nonce - start)
            if deadline is not None and time.monotonic() > deadline:
                raise ProofOfWorkTimeout(f"no proof of work found after {nonce - start} tries")

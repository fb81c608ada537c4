"""DP-3T low-cost design: a daily key chain SK_t = SHA-256(SK_t-1) and 96 EphIDs a day.

Implemented from the DP-3T white paper and checked against the vectors of its reference implementation.
The per-day broadcast order is a secure shuffle keyed by a device secret that is never uploaded, so the
order is unpredictable to observers yet stable across a daemon restart (a restart must not put an EphID
on air in a second epoch).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from agent.clock import DAY, day_of, start_of_day
from agent.schemes._crypto import aes_ctr, check_len, hmac_sha256
from agent.schemes.base import Broadcast, SchemeName

EPOCH_SECONDS = 900
EPHIDS_PER_DAY = DAY // EPOCH_SECONDS
EPHID_LEN = 16
SK_LEN = 32
BROADCAST_KEY = b"broadcast key"
METADATA_KEY = b"metadata key"
METADATA_VERSION = 0x40
_ZERO_COUNTER = bytes(16)
_KEYSTREAM_ZEROS = bytes(EPHIDS_PER_DAY * EPHID_LEN)


def day_start(unix_seconds: float) -> int:
    """Unix seconds at the start of the UTC day holding ``unix_seconds``: where the day's EphIDs begin."""
    return start_of_day(day_of(unix_seconds))


def epoch_in_day(unix_seconds: float) -> int:
    return (int(unix_seconds) % DAY) // EPOCH_SECONDS


def next_day_key(sk: bytes) -> bytes:
    check_len("SK", sk, SK_LEN)
    return hashlib.sha256(sk).digest()


def advance_key(sk: bytes, days: int) -> bytes:
    if days < 0:
        raise ValueError("the key chain only goes forward")
    for _ in range(days):
        sk = next_day_key(sk)
    return sk


def broadcast_stream_key(sk: bytes) -> bytes:
    check_len("SK", sk, SK_LEN)
    return hmac_sha256(sk, BROADCAST_KEY)


def ephid_stream(sk: bytes) -> bytes:
    """The day's 96 EphIDs back to back: the AES-256-CTR keystream under PRF(SK, 'broadcast key')."""
    return aes_ctr(broadcast_stream_key(sk), _ZERO_COUNTER, _KEYSTREAM_ZEROS)


def ephids(sk: bytes) -> list[bytes]:
    """The day's 96 EphIDs in derivation order."""
    stream = ephid_stream(sk)
    return [stream[i : i + EPHID_LEN] for i in range(0, len(stream), EPHID_LEN)]


def metadata_key(sk: bytes) -> bytes:
    check_len("SK", sk, SK_LEN)
    return hmac_sha256(sk, METADATA_KEY)[:16]


def encrypt_metadata(sk: bytes, ephid: bytes, plain: bytes) -> bytes:
    """GAEN-style: AES-128-CTR keyed per day, counter block = the EphID, so TX power is no fingerprint."""
    return aes_ctr(metadata_key(sk), ephid, plain)


decrypt_metadata = encrypt_metadata


def metadata(tx_power: int) -> bytes:
    if not -128 <= tx_power <= 127:
        raise ValueError(f"TX power {tx_power} dBm does not fit an int8")
    return bytes([METADATA_VERSION, tx_power & 0xFF, 0, 0])


def metadata_tx_power(plain: bytes) -> int | None:
    """TX power from decrypted metadata, or None when the version byte is not ours (wrong key)."""
    if len(plain) != 4 or plain[0] != METADATA_VERSION:
        return None
    return int.from_bytes(plain[1:2], "big", signed=True)


def secure_shuffle(seed: bytes, n: int = EPHIDS_PER_DAY) -> list[int]:
    """An unbiased Fisher-Yates permutation of range(n) driven by HMAC-SHA256(seed, counter)."""
    order = list(range(n))
    counter = 0
    pool = b""

    def draw() -> int:
        nonlocal counter, pool
        if len(pool) < 4:
            pool += hmac_sha256(seed, counter.to_bytes(8, "big"))
            counter += 1
        value, pool = int.from_bytes(pool[:4], "big"), pool[4:]
        return value

    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (1 << 32) - ((1 << 32) % bound)
        r = draw()
        while r >= limit:
            r = draw()
        j = r % bound
        order[i], order[j] = order[j], order[i]
    return order


@dataclass(frozen=True)
class Dp3tKeyState:
    """The device's key chain: the SK of ``start_day`` (kept ≥ retention days back for reporting) and
    the never-uploaded secret that keys the daily shuffle."""

    start_day: int
    start_sk: bytes
    shuffle_secret: bytes

    def sk_for_day(self, day: int) -> bytes:
        return advance_key(self.start_sk, day - self.start_day)

    def rebased(self, day: int) -> Dp3tKeyState:
        """The same chain starting at a later ``day``: older SKs are forgotten (forward secrecy)."""
        return Dp3tKeyState(day, self.sk_for_day(day), self.shuffle_secret)


def new_key_state(t: float, random_bytes: Callable[[int], bytes] = os.urandom) -> Dp3tKeyState:
    return Dp3tKeyState(day_of(t), random_bytes(SK_LEN), random_bytes(32))


def service_data(ephid: bytes, encrypted_metadata: bytes) -> bytes:
    return ephid + encrypted_metadata


@dataclass(frozen=True)
class Dp3tScheme:
    """Broadcasts, in each 15-minute epoch, that epoch's EphID of the day's shuffled list."""

    name: ClassVar[SchemeName] = SchemeName.DP3T
    keys: Dp3tKeyState

    def broadcast_at(self, t: float, tx_power: int) -> Broadcast | None:
        day = day_of(t)
        if day < self.keys.start_day:
            return None
        sk = self.keys.sk_for_day(day)
        day_seed = hmac_sha256(self.keys.shuffle_secret, day.to_bytes(8, "big"))
        epoch = epoch_in_day(t)
        ephid = ephids(sk)[secure_shuffle(day_seed)[epoch]]
        start = day * DAY + epoch * EPOCH_SECONDS
        return Broadcast(
            scheme=SchemeName.DP3T,
            ephemeral_id=ephid,
            service_data=service_data(ephid, encrypt_metadata(sk, ephid, metadata(tx_power))),
            valid_from=float(start),
            valid_until=float(start + EPOCH_SECONDS),
        )

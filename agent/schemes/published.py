"""A diagnosis key as published on a list: the one value the list formats, the matcher and the backend share.

It lives with the schemes (pure, no I/O) because the matcher consumes it, while the export file format that
carries it sits at the edge. GAEN publishes 16-byte TEKs; our DP-3T lists reuse the same container for
32-byte SK_t day keys, so the type accepts both lengths and the reader of a list says which one it wants.
The invariants are checked on construction so a key that exists is a key the matcher can expand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

GAEN_KEY_LEN = 16
DP3T_KEY_LEN = 32
KEY_LENGTHS = (GAEN_KEY_LEN, DP3T_KEY_LEN)

ENIN_SECONDS = 600  # one EN interval number = 10 minutes
MAX_ROLLING_PERIOD = 144  # one UTC day of intervals
MAX_INTERVAL_NUMBER = 2**31 - 1  # int32 on the wire
MAX_TRANSMISSION_RISK_LEVEL = 8
MAX_DAYS_SINCE_ONSET = 14


class ReportType(IntEnum):
    """Why a key was published (the export format's ReportType enum)."""

    UNKNOWN = 0
    CONFIRMED_TEST = 1
    CONFIRMED_CLINICAL_DIAGNOSIS = 2
    SELF_REPORT = 3
    RECURSIVE = 4
    REVOKED = 5


_REPORT_TYPES = frozenset(int(r) for r in ReportType)


@dataclass(frozen=True)
class PublishedKey:
    """One published day key and the interval range it covers.

    ``rolling_start_interval_number`` is an ENIN (unix seconds // 600); the key covers ``rolling_period``
    intervals from there. ``days_since_onset`` is None when the list does not say.
    """

    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int = MAX_ROLLING_PERIOD
    transmission_risk_level: int = 0
    report_type: int = ReportType.UNKNOWN
    days_since_onset: int | None = None

    def __post_init__(self) -> None:
        problem = key_problem(self)
        if problem is not None:
            raise ValueError(problem)

    @property
    def valid_from(self) -> int:
        """Unix seconds at which the key's first interval starts."""
        return self.rolling_start_interval_number * ENIN_SECONDS

    @property
    def valid_until(self) -> int:
        """Unix seconds at which the key's last interval ends (exclusive)."""
        return (self.rolling_start_interval_number + self.rolling_period) * ENIN_SECONDS


def key_problem(key: PublishedKey) -> str | None:
    """What makes a key unusable, as a one-line reason that never contains the key itself; None if fine."""
    if not isinstance(key.key_data, bytes) or len(key.key_data) not in KEY_LENGTHS:
        length = len(key.key_data) if isinstance(key.key_data, bytes | bytearray) else "?"
        return f"key_data is {length} bytes, want {GAEN_KEY_LEN} (GAEN TEK) or {DP3T_KEY_LEN} (DP-3T SK)"
    if not 0 <= key.rolling_start_interval_number <= MAX_INTERVAL_NUMBER:
        return f"rolling_start_interval_number {key.rolling_start_interval_number} out of range"
    if not 1 <= key.rolling_period <= MAX_ROLLING_PERIOD:
        return f"rolling_period {key.rolling_period} not in 1..{MAX_ROLLING_PERIOD}"
    if key.rolling_start_interval_number + key.rolling_period > MAX_INTERVAL_NUMBER:
        return "rolling period runs past the last interval number"
    if not 0 <= key.transmission_risk_level <= MAX_TRANSMISSION_RISK_LEVEL:
        level = key.transmission_risk_level
        return f"transmission_risk_level {level} not in 0..{MAX_TRANSMISSION_RISK_LEVEL}"
    if key.report_type not in _REPORT_TYPES:
        return f"report_type {key.report_type} unknown"
    if key.days_since_onset is not None and abs(key.days_since_onset) > MAX_DAYS_SINCE_ONSET:
        return f"days_since_onset {key.days_since_onset} not in -14..14"
    return None


@dataclass(frozen=True)
class KeyTable:
    """Many published keys of one length, column-wise: what the matcher reads per key, with no object
    per key. A national list holds over a million keys; as ``PublishedKey`` objects they cost several
    microseconds and a few hundred bytes each, while the matcher needs only the key bytes, rolling start
    and rolling period of each, and the whole key only for the few that match (``key(i)`` builds it).
    Whoever builds a table has checked its keys as ``PublishedKey`` would."""

    key_length: int
    key_data: bytes
    rolling_start: Sequence[int]
    rolling_period: Sequence[int]
    build_key: Callable[[int], PublishedKey]

    def __len__(self) -> int:
        return len(self.rolling_start)

    def key(self, i: int) -> PublishedKey:
        return self.build_key(i)

    def key_bytes(self, first: int, stop: int) -> list[bytes]:
        n = self.key_length
        data = self.key_data
        return [data[i : i + n] for i in range(first * n, stop * n, n)]

    def key_bytes_at(self, positions: Sequence[int]) -> list[bytes]:
        n = self.key_length
        data = self.key_data
        return [data[i * n : i * n + n] for i in positions]

    @classmethod
    def of(cls, keys: Sequence[PublishedKey], key_length: int) -> KeyTable:
        """The keys of ``key_length`` bytes among ``keys`` (others are left out, as the matcher ignores them)."""
        chosen = [k for k in keys if len(k.key_data) == key_length]
        return cls(
            key_length,
            b"".join(k.key_data for k in chosen),
            [k.rolling_start_interval_number for k in chosen],
            [k.rolling_period for k in chosen],
            chosen.__getitem__,
        )

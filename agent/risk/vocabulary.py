"""The words the risk models speak, their two errors, and the small checks every part of ``agent.risk`` uses.

The enums keep the numeric values of the GAEN v2 Exposure Notification API (and ``RiskLevel`` CWA's), so
a configuration written for a phone ports unchanged. ``ReportType`` is the published key's own field and
lives with the list formats in :mod:`agent.schemes.published`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any, TypeVar

MAX_ATTENUATION_DB = 255  # GAEN reports attenuation in one unsigned byte
CONTAGIOUS_DAYS_BEFORE_ONSET = 2
"""A diagnosed person was contagious from this many days before symptom onset (or the test), the DP-3T and
GAEN rule: a report publishes keys (or contacts) from that day to today, and nothing older."""


def first_contagious_day(onset_day: int | None, today: int, retention_days: int) -> int:
    """The first UTC day a report covers: onset - ``CONTAGIOUS_DAYS_BEFORE_ONSET``, never before the oldest
    day kept; with no onset known, the whole retention."""
    oldest = today - retention_days + 1
    return oldest if onset_day is None else max(oldest, onset_day - CONTAGIOUS_DAYS_BEFORE_ONSET)


class RiskConfigError(ValueError):
    """A risk setting is invalid. The message starts with the dotted path of the offending key."""


class RiskInputError(ValueError):
    """Sightings or exposure windows handed to this module are inconsistent. Messages never carry an ID."""


class Infectiousness(IntEnum):
    NONE = 0
    STANDARD = 1
    HIGH = 2


class CalibrationConfidence(IntEnum):
    LOWEST = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class RiskLevel(IntEnum):
    """NONE: nothing that counts. LOW/HIGH carry the CWA values 1/2; HIGH is what triggers a notification."""

    NONE = 0
    LOW = 1
    HIGH = 2


_E = TypeVar("_E", bound=IntEnum)


def as_enum(cls: type[_E], value: object, where: str, error: type[ValueError] = RiskConfigError) -> _E:
    """An enum member from its number or its (case-insensitive) name, or an error naming ``where``."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.strip().upper()]
        except KeyError:
            pass
    elif is_int(value):
        try:
            return cls(value)
        except ValueError:
            pass
    names = ", ".join(f"{m.name.lower()} ({m.value})" for m in cls)
    raise error(f"{where}: {value!r} is not a {cls.__name__}; use one of {names}")


def is_int(value: object) -> bool:
    """An int that is not a bool: TOML and JSON ``true`` must not pass for 1."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_trl(trl: object, where: str) -> None:
    if trl is not None and (not is_int(trl) or not 1 <= trl <= 8):
        raise RiskInputError(f"{where} must be 1..8 or None (unknown), got {trl!r}")


# --------------------------------------------------------------------------------------------------------
# Reading settings tables: every message starts with the dotted path of the offending key


def check_keys(data: Mapping[str, Any], where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    """Refuse a non-table, an unknown key (a typo would otherwise silently keep a default) or a missing one."""
    allowed = set(allowed)
    if not isinstance(data, Mapping):
        raise RiskConfigError(f"{where}: expected a table, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise RiskConfigError(f"{where}.{key}: unknown setting (known: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in data:
            raise RiskConfigError(f"{where}.{key}: missing")


def int_setting(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data[key]
    if not is_int(value):
        raise RiskConfigError(f"{where}.{key}: expected a whole number, got {value!r}")
    return value


def number_setting(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RiskConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)

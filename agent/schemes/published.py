"""A key as published in an infection list (GAEN export format; also carries DP-3T day keys)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedKey:
    """key_data is a 16-byte GAEN TEK or a 32-byte DP-3T SK_t; for DP-3T the rolling start interval is the
    first 10-minute interval of day t (t * 144), so both schemes share one container."""

    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int = 144
    transmission_risk_level: int = 0
    report_type: int = 1
    days_since_onset: int | None = None

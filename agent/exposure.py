"""From a verified list of published keys to stored, explainable exposure results.

This is the one place that joins matching, risk scoring and the store, so the daemon's sync, ``proxitrace
match`` and the test-bed all decide exposure the same way. Results are stored per day with the day's
explanation (buckets, minutes, why) and never with an ID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.clock import DAY, day_of
from agent.matching import KeyMatch, SightingIndex, match_dp3t, match_gaen
from agent.risk import (
    Assessment,
    CalibrationConfidence,
    KeyAttributes,
    ReportType,
    RiskSettings,
    assess,
    exposure_windows_from_sightings,
)
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.store import ExposureRecord, Store


@dataclass(frozen=True)
class ListOutcome:
    sha256: str
    keys: int
    matched_keys: int
    already_processed: bool
    assessment: Assessment | None

    @property
    def notify(self) -> bool:
        return bool(self.assessment and self.assessment.notify)


def list_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def match_keys(
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    index: SightingIndex,
    now: float,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    if scheme is SchemeName.GAEN:
        return match_gaen(keys, index, progress=progress)
    if scheme is SchemeName.DP3T:
        return match_dp3t(keys, index, today=day_of(now), progress=progress)
    raise ValueError(f"{scheme} lists are not matched on the device (the backend scores EBID contacts)")


def assess_matches(matches: Sequence[KeyMatch], settings: RiskSettings, receiver_correction: float) -> Assessment:
    windows = []
    for m in matches:
        key = KeyAttributes(
            transmission_risk_level=m.key.transmission_risk_level or None,
            report_type=ReportType(m.key.report_type) if m.key.report_type in ReportType._value2member_map_ else None,
            days_since_onset=m.key.days_since_onset,
        )
        windows.extend(
            exposure_windows_from_sightings(
                m.windows,
                tx_power=m.tx_power,
                receiver_correction=receiver_correction,
                key=key,
                calibration_confidence=CalibrationConfidence.LOWEST,
                config=settings.windows,
            )
        )
    return assess(windows, settings.model)


def process_list(
    store: Store,
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    digest: str,
    source: str,
    now: float,
    settings: RiskSettings,
    receiver_correction: float,
    retention_days: int = 14,
    progress: Callable[[int], None] | None = None,
) -> ListOutcome:
    """Match one verified list against everything heard within retention and store the per-day results
    together with the list's digest (so it is never matched twice)."""
    if store.is_list_processed(digest):
        return ListOutcome(digest, len(keys), 0, True, None)
    index = SightingIndex(store.windows(scheme=scheme, since=now - retention_days * DAY))
    matches = match_keys(scheme, keys, index, now, progress)
    assessment = assess_matches(matches, settings, receiver_correction) if matches else None
    records = []
    if assessment is not None:
        explanation = assessment.explain().to_dict()
        for day in assessment.days:
            day_view = {k: v for k, v in explanation.items() if k != "days"}
            day_view["days"] = [d for d in explanation["days"] if d["day"] == day.day]
            records.append(ExposureRecord(day.day, scheme, day.crossed, float(day.score), day_view, now))
    store.record_exposures(records, processed=(digest, source, len(keys), now))
    return ListOutcome(digest, len(keys), len(matches), False, assessment)

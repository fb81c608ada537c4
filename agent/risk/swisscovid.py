"""The SwissCovid model (the default): minutes per attenuation bucket per day, weighted, against a threshold."""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar, Literal

from agent.risk.results import (
    Assessment,
    BucketMinutes,
    DayAssessment,
    WindowAssessment,
    by_day,
    dropped_by_gaen,
    figure,
    tx_notes,
)
from agent.risk.vocabulary import RiskConfigError, RiskLevel, check_keys, is_number, number_setting
from agent.risk.windows import ExposureWindow

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwissCovidModel:
    """SwissCovid's rule (DP-3T SDK): per day, seconds per attenuation bucket, rounded up to whole minutes,
    weighted and summed; notify when the sum reaches the threshold.

    Buckets: with thresholds [t0, t1], bucket 0 is ``a < t0``, bucket 1 is ``t0 <= a < t1``, bucket 2 is
    ``a >= t1``: a threshold value itself belongs to the bucket above it (55 dB is 'medium', 63 dB is
    'far'). The notify test is inclusive: exactly 15 weighted minutes notifies. Attenuation is the scan
    instance's typical attenuation unless ``attenuation`` is "minimum". Key attributes (TRL, report type)
    play no part, as in SwissCovid; windows whose infectiousness is NONE or whose key was revoked are
    dropped as GAEN would.
    """

    name: ClassVar[str] = "swisscovid"

    attenuation_thresholds_db: tuple[float, ...] = (55.0, 63.0)
    weights: tuple[float, ...] = (1.0, 0.5, 0.0)
    notify_at_weighted_minutes: float = 15.0
    attenuation: Literal["typical", "minimum"] = "typical"
    round_minutes_up: bool = True

    def __post_init__(self) -> None:
        where = "SwissCovidModel"
        thresholds = tuple(self.attenuation_thresholds_db)
        weights = tuple(self.weights)
        if not thresholds or not all(is_number(t) for t in thresholds):
            raise RiskConfigError(
                f"{where}.attenuation_thresholds_db: expected one or more numbers, got {thresholds!r}"
            )
        if any(b <= a for a, b in pairwise(thresholds)):
            raise RiskConfigError(f"{where}.attenuation_thresholds_db: must increase strictly, got {list(thresholds)}")
        if len(weights) != len(thresholds) + 1:
            raise RiskConfigError(
                f"{where}.weights: {len(thresholds)} threshold(s) make {len(thresholds) + 1} buckets, "
                f"so give {len(thresholds) + 1} weights, got {len(weights)}"
            )
        if not all(is_number(w) and w >= 0 for w in weights):
            raise RiskConfigError(f"{where}.weights: must be non-negative numbers, got {list(weights)}")
        if not is_number(self.notify_at_weighted_minutes) or self.notify_at_weighted_minutes <= 0:
            raise RiskConfigError(
                f"{where}.notify_at_weighted_minutes: must be a positive number, "
                f"got {self.notify_at_weighted_minutes!r}"
            )
        if self.attenuation not in ("typical", "minimum"):
            raise RiskConfigError(f"{where}.attenuation: must be 'typical' or 'minimum', got {self.attenuation!r}")
        if not isinstance(self.round_minutes_up, bool):
            raise RiskConfigError(f"{where}.round_minutes_up: must be true or false, got {self.round_minutes_up!r}")
        object.__setattr__(self, "attenuation_thresholds_db", tuple(float(t) for t in thresholds))
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        object.__setattr__(self, "notify_at_weighted_minutes", float(self.notify_at_weighted_minutes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk.swisscovid") -> SwissCovidModel:
        """Keys (all optional): attenuation_thresholds_db, weights, notify_at_weighted_minutes,
        attenuation ("typical"|"minimum"), round_minutes_up."""
        allowed = {
            "attenuation_thresholds_db",
            "weights",
            "notify_at_weighted_minutes",
            "attenuation",
            "round_minutes_up",
        }
        check_keys(data, where, allowed)
        kwargs: dict[str, Any] = {}
        for key in ("attenuation_thresholds_db", "weights"):
            if key in data:
                value = data[key]
                if not isinstance(value, Sequence) or isinstance(value, str):
                    raise RiskConfigError(f"{where}.{key}: expected a list of numbers, got {value!r}")
                kwargs[key] = tuple(number_setting(v, f"{where}.{key}[{i}]") for i, v in enumerate(value))
        if "notify_at_weighted_minutes" in data:
            kwargs["notify_at_weighted_minutes"] = number_setting(
                data["notify_at_weighted_minutes"], f"{where}.notify_at_weighted_minutes"
            )
        for key in ("attenuation", "round_minutes_up"):
            if key in data:
                kwargs[key] = data[key]
        try:
            return cls(**kwargs)
        except RiskConfigError as exc:
            message = str(exc).removeprefix("SwissCovidModel")
            raise RiskConfigError(f"{where}{message}") from None

    def bucket_labels(self) -> tuple[str, ...]:
        t = [figure(x) for x in self.attenuation_thresholds_db]
        labels = [f"< {t[0]} dB"]
        labels.extend(f"{lo} to < {hi} dB" for lo, hi in pairwise(t))
        labels.append(f">= {t[-1]} dB")
        return tuple(labels)

    def describe(self) -> str:
        return (
            f"SwissCovid: {self.attenuation} attenuation, thresholds "
            f"{'/'.join(figure(t) for t in self.attenuation_thresholds_db)} dB, weights "
            f"{'/'.join(figure(w) for w in self.weights)}, minutes per bucket per day "
            f"{'rounded up' if self.round_minutes_up else 'exact'}, notify at >= "
            f"{figure(self.notify_at_weighted_minutes)} weighted minutes on a day"
        )

    def bucket_of(self, attenuation: int) -> int:
        return bisect_right(self.attenuation_thresholds_db, attenuation)

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment:
        labels = self.bucket_labels()
        days = tuple(self._assess_day(day, day_windows, labels) for day, day_windows in sorted(by_day(windows).items()))
        result = Assessment(self.name, self.describe(), "weighted minutes", days)
        _log.debug("swisscovid: %d day(s) assessed, notify=%s", len(days), result.notify)
        return result

    def _seconds_per_bucket(self, window: ExposureWindow) -> list[int]:
        seconds = [0] * (len(self.attenuation_thresholds_db) + 1)
        for si in window.scan_instances:
            value = si.typical_attenuation if self.attenuation == "typical" else si.min_attenuation
            seconds[self.bucket_of(value)] += si.counted_seconds
        return seconds

    def _assess_window(self, window: ExposureWindow, seconds: Sequence[int], labels: Sequence[str]) -> WindowAssessment:
        """A window's own minutes (exact, not rounded: SwissCovid rounds the day's sums, not each window's)."""
        dropped = dropped_by_gaen(window)
        buckets = tuple(
            BucketMinutes(label, s / 60, w) for label, s, w in zip(labels, seconds, self.weights, strict=True)
        )
        return WindowAssessment(
            counted=dropped is None,
            reason=dropped or "counted: " + ", ".join(f"{figure(b.minutes)} min at {b.label}" for b in buckets),
            buckets=buckets,
            score=0.0 if dropped else sum(b.weighted_minutes for b in buckets),
            calibration_confidence=window.calibration_confidence,
            transmission_risk_level=window.transmission_risk_level,
            scan_instances=len(window.scan_instances),
            scan_instances_with_assumed_tx_power=window.scan_instances_with_assumed_tx_power,
            assumed_tx_power=window.assumed_tx_power,
        )

    def _assess_day(self, day: int, day_windows: Sequence[ExposureWindow], labels: Sequence[str]) -> DayAssessment:
        per_window = [(window, self._seconds_per_bucket(window)) for window in day_windows]
        assessed = tuple(self._assess_window(window, seconds, labels) for window, seconds in per_window)
        seconds = [0] * len(labels)
        counted = []
        for (window, window_seconds), assessment in zip(per_window, assessed, strict=True):
            if assessment.counted:
                counted.append(window)
                seconds = [a + b for a, b in zip(seconds, window_seconds, strict=True)]
        minutes = [math.ceil(s / 60) if self.round_minutes_up else s / 60 for s in seconds]
        buckets = tuple(BucketMinutes(label, m, w) for label, m, w in zip(labels, minutes, self.weights, strict=True))
        # Rounded so float noise in exact mode cannot decide a threshold (0.1 + 0.2 != 0.3).
        score = round(sum(b.weighted_minutes for b in buckets), 9)
        threshold = self.notify_at_weighted_minutes
        if score >= threshold:
            level = RiskLevel.HIGH
        elif score > 0:
            level = RiskLevel.LOW
        else:
            level = RiskLevel.NONE
        return DayAssessment(
            day=day,
            buckets=buckets,
            score=score,
            threshold=threshold,
            risk_level=level,
            reason=self._reason(buckets, score, threshold, len(counted), len(day_windows)),
            windows=assessed,
            notes=tx_notes(counted),
        )

    def _reason(
        self, buckets: Sequence[BucketMinutes], score: float, threshold: float, counted: int, total: int
    ) -> str:
        if counted == 0:
            return f"none of the {total} exposure window(s) counted, so the day has no weighted minutes."
        rounding = "rounded up to whole minutes, " if self.round_minutes_up else ""
        parts = " + ".join(f"{figure(b.minutes)} min at {b.label} x {figure(b.weight)}" for b in buckets)
        base = f"{parts} ({rounding}over {counted} window(s)) = {figure(score)} weighted minutes"
        if score >= threshold:
            return f"{base}, which reaches the threshold of {figure(threshold)}: notify."
        return f"{base}, {figure(threshold - score)} short of the threshold of {figure(threshold)}: no notification."

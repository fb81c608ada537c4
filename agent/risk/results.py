"""What a risk model answers, and how that answer explains itself.

Every result carries its **explanation**: per day the minutes in each attenuation bucket, the weights, the
score, the threshold and a sentence why it did or did not cross. Results are built only from exposure
windows, which hold no IDs or keys, so no rendering of them can reveal one.

Also the shared steps of the models (:class:`RiskModel`): grouping windows by day, dropping the windows
GAEN v2 would not have yielded, and the note that a sender's TX power was assumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agent.clock import day_to_iso
from agent.risk.vocabulary import CalibrationConfidence, Infectiousness, RiskInputError, RiskLevel
from agent.risk.windows import ExposureWindow
from agent.schemes.published import ReportType


@dataclass(frozen=True)
class BucketMinutes:
    """Minutes spent in one attenuation bucket and the weight the model gives them."""

    label: str
    minutes: float
    weight: float

    @property
    def weighted_minutes(self) -> float:
        return self.minutes * self.weight

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.label,
            "minutes": json_number(self.minutes),
            "weight": self.weight,
            "weighted_minutes": json_number(self.weighted_minutes),
        }


@dataclass(frozen=True)
class WindowAssessment:
    """How the model saw one exposure window. ``counted`` False means it was dropped, ``reason`` says why."""

    counted: bool
    reason: str
    buckets: tuple[BucketMinutes, ...]
    score: float
    calibration_confidence: CalibrationConfidence
    risk_level: RiskLevel | None = None
    transmission_risk_level: int | None = None
    transmission_risk_value: float | None = None
    scan_instances: int = 0
    scan_instances_with_assumed_tx_power: int = 0
    assumed_tx_power: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "counted": self.counted,
            "reason": self.reason,
            "score": json_number(self.score),
            "buckets": [b.to_dict() for b in self.buckets],
            "scan_instances": self.scan_instances,
            "calibration_confidence": self.calibration_confidence.name,
        }
        if self.risk_level is not None:
            out["risk_level"] = self.risk_level.name
        if self.transmission_risk_level is not None:
            out["transmission_risk_level"] = self.transmission_risk_level
        if self.transmission_risk_value is not None:
            out["transmission_risk_value"] = self.transmission_risk_value
        if self.scan_instances_with_assumed_tx_power:
            out["scan_instances_with_assumed_tx_power"] = self.scan_instances_with_assumed_tx_power
            out["assumed_tx_power_dbm"] = self.assumed_tx_power
        return out


@dataclass(frozen=True)
class DayAssessment:
    """One UTC day: minutes per bucket, the score, the threshold, the level and why.

    ``distinct_encounters_low/high`` are CWA's 'minimum distinct encounters' (distinct TRL and calibration
    confidence among windows of that per-window level); None for models without the notion.
    """

    day: int
    buckets: tuple[BucketMinutes, ...]
    score: float
    threshold: float | None
    risk_level: RiskLevel
    reason: str
    windows: tuple[WindowAssessment, ...]
    notes: tuple[str, ...] = ()
    distinct_encounters_low: int | None = None
    distinct_encounters_high: int | None = None

    @property
    def date(self) -> str:
        return day_to_iso(self.day)

    @property
    def crossed(self) -> bool:
        return self.risk_level == RiskLevel.HIGH

    @property
    def windows_counted(self) -> int:
        return sum(1 for w in self.windows if w.counted)

    @property
    def windows_ignored(self) -> int:
        return sum(1 for w in self.windows if not w.counted)


@dataclass(frozen=True)
class Assessment:
    """A model's verdict over a set of exposure windows: per day, and in total.

    ``risk_level`` is HIGH when any day is HIGH, else LOW (also with no exposure at all, as CWA reports it);
    ``notify`` is the same thing as a bool. Days whose level is NONE are listed (so the explanation can say
    why they do not count) but do not count toward the day and encounter totals.
    """

    model: str
    model_description: str
    score_name: str
    days: tuple[DayAssessment, ...]
    counts_encounters: bool = False

    @property
    def notify(self) -> bool:
        return any(d.crossed for d in self.days)

    @property
    def risk_level(self) -> RiskLevel:
        return RiskLevel.HIGH if self.notify else RiskLevel.LOW

    def days_with(self, level: RiskLevel) -> tuple[DayAssessment, ...]:
        return tuple(d for d in self.days if d.risk_level == level)

    @property
    def days_with_low_risk(self) -> int:
        return len(self.days_with(RiskLevel.LOW))

    @property
    def days_with_high_risk(self) -> int:
        return len(self.days_with(RiskLevel.HIGH))

    @property
    def most_recent_day_with_low_risk(self) -> int | None:
        return max((d.day for d in self.days_with(RiskLevel.LOW)), default=None)

    @property
    def most_recent_day_with_high_risk(self) -> int | None:
        return max((d.day for d in self.days_with(RiskLevel.HIGH)), default=None)

    def _encounters(self, attr: str) -> int | None:
        if not self.counts_encounters:
            return None
        return sum(getattr(d, attr) or 0 for d in self.days if d.risk_level != RiskLevel.NONE)

    @property
    def distinct_encounters_with_low_risk(self) -> int | None:
        return self._encounters("distinct_encounters_low")

    @property
    def distinct_encounters_with_high_risk(self) -> int | None:
        return self._encounters("distinct_encounters_high")

    def explain(self) -> Explanation:
        return Explanation(self)


@dataclass(frozen=True)
class Explanation:
    """An assessment for people and for the API: ``to_text()`` and a JSON-able ``to_dict()``.

    Built only from the assessment, which holds no IDs or keys, so neither rendering can reveal one.
    """

    assessment: Assessment

    @property
    def summary(self) -> str:
        a = self.assessment
        high = a.days_with(RiskLevel.HIGH)
        if high:
            dates = ", ".join(d.date for d in high)
            n = len(high)
            return f"Notify: {n} day{'s' if n != 1 else ''} crossed the threshold ({dates})."
        counted = [d for d in a.days if d.windows_counted]
        if not a.days:
            return "No notification: no exposure windows."
        if not counted:
            return "No notification: no exposure window counted (see the reasons per day)."
        top = max(counted, key=lambda d: d.score)
        return (
            f"No notification: no day crossed the threshold; the highest {a.score_name} was "
            f"{figure(top.score)} on {top.date}."
        )

    def to_dict(self) -> dict[str, Any]:
        a = self.assessment
        return {
            "model": a.model,
            "model_description": a.model_description,
            "notify": a.notify,
            "risk_level": a.risk_level.name,
            "summary": self.summary,
            "score_name": a.score_name,
            "days_with_high_risk": a.days_with_high_risk,
            "days_with_low_risk": a.days_with_low_risk,
            "days": [
                {
                    "day": d.day,
                    "date": d.date,
                    "risk_level": d.risk_level.name,
                    "crossed": d.crossed,
                    "score": json_number(d.score),
                    "threshold": d.threshold,
                    "buckets": [b.to_dict() for b in d.buckets],
                    "why": d.reason,
                    "notes": list(d.notes),
                    "windows_counted": d.windows_counted,
                    "windows_ignored": d.windows_ignored,
                    **(
                        {
                            "distinct_encounters_low": d.distinct_encounters_low,
                            "distinct_encounters_high": d.distinct_encounters_high,
                        }
                        if d.distinct_encounters_low is not None
                        else {}
                    ),
                    "windows": [w.to_dict() for w in d.windows],
                }
                for d in a.days
            ],
        }

    def to_text(self) -> str:
        a = self.assessment
        lines = [f"Risk model: {a.model_description}", self.summary]
        for d in a.days:
            threshold = "" if d.threshold is None else f" (threshold {figure(d.threshold)})"
            lines.append(
                f"{d.date}: {d.risk_level.name}, {a.score_name} {figure(d.score)}{threshold}; "
                f"{d.windows_counted} window(s) counted, {d.windows_ignored} ignored"
            )
            for b in d.buckets:
                lines.append(
                    f"  {b.label}: {figure(b.minutes)} min x {figure(b.weight)} = {figure(b.weighted_minutes)}"
                )
            lines.append(f"  Why: {d.reason}")
            lines.extend(f"  Note: {note}" for note in d.notes)
            lines.extend(f"  Window {i}: {w.reason}" for i, w in enumerate(d.windows, 1))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def json_number(value: float) -> float:
    """Four decimals: enough to recompute a score, few enough that float noise does not show in the API."""
    return round(value, 4)


def figure(value: float) -> str:
    """A number as a sentence says it: two decimals at most, no trailing zeros (15, 7.5, 0.33)."""
    return f"{round(value, 2):g}"


class RiskModel(Protocol):
    """A scoring model: exposure windows in, an explainable per-day assessment out. Pure and immutable."""

    name: ClassVar[str]

    def describe(self) -> str: ...

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment: ...


def dropped_by_gaen(window: ExposureWindow) -> str | None:
    """GAEN v2 yields no windows for these keys; windows built here may still carry them, so drop visibly."""
    if window.infectiousness == Infectiousness.NONE:
        return "dropped: the key's infectiousness on this day is NONE"
    if window.report_type == ReportType.REVOKED:
        return "dropped: the key was revoked"
    return None


def by_day(windows: Iterable[ExposureWindow]) -> dict[int, list[ExposureWindow]]:
    """Windows per UTC day: every model decides per day, as GAEN's daily summaries do."""
    days: dict[int, list[ExposureWindow]] = {}
    for window in windows:
        if not isinstance(window, ExposureWindow):
            raise RiskInputError(f"expected ExposureWindow values, got {type(window).__name__}")
        days.setdefault(window.day, []).append(window)
    return days


def tx_notes(windows: Sequence[ExposureWindow]) -> tuple[str, ...]:
    """One note per assumed TX power: a score built on a guess must say so where a person reads it."""
    notes = []
    for power in sorted({w.assumed_tx_power for w in windows if w.scan_instances_with_assumed_tx_power}):
        n = sum(w.scan_instances_with_assumed_tx_power for w in windows if w.assumed_tx_power == power)
        total = sum(len(w.scan_instances) for w in windows)
        notes.append(
            f"the sender's TX power was unknown for {n} of {total} scan instance(s); {power} dBm was assumed for them"
        )
    return tuple(notes)

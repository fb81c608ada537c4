"""The Corona-Warn-App model, configured with CWA's own risk-calculation configuration shape.

Per window a transmission risk value times weighted minutes at the **minimum** attenuation gives a
normalized time; per day the windows' normalized times add up and map to a risk level. The configuration
classes (:class:`Range`, :class:`TrlEncoding`, ...) mirror CWA's JSON so a published configuration loads
as it is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

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
from agent.risk.vocabulary import (
    Infectiousness,
    RiskConfigError,
    RiskLevel,
    as_enum,
    check_keys,
    int_setting,
    number_setting,
)
from agent.risk.windows import ExposureWindow
from agent.schemes.published import ReportType

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Range:
    """A closed interval by default; either end can be made exclusive (CWA's ``Range``)."""

    min: float
    max: float
    min_exclusive: bool = False
    max_exclusive: bool = False

    def __contains__(self, value: float) -> bool:
        if value < self.min or (self.min_exclusive and value == self.min):
            return False
        return not (value > self.max or (self.max_exclusive and value == self.max))

    def __str__(self) -> str:
        left = "(" if self.min_exclusive else "["
        right = ")" if self.max_exclusive else "]"
        return f"{left}{figure(self.min)}, {figure(self.max)}{right}"

    @classmethod
    def from_dict(cls, data: object, where: str) -> Range:
        """CWA's JSON shape: min (default 0), max (required), minExclusive, maxExclusive (default false)."""
        if not isinstance(data, Mapping):
            raise RiskConfigError(f"{where}: expected a table with min/max, got {data!r}")
        check_keys(data, where, {"min", "max", "minExclusive", "maxExclusive"}, {"max"})
        low = number_setting(data.get("min", 0), f"{where}.min")
        high = number_setting(data["max"], f"{where}.max")
        flags = {}
        for key in ("minExclusive", "maxExclusive"):
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise RiskConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            flags[key] = value
        if high < low:
            raise RiskConfigError(f"{where}: max {figure(high)} is below min {figure(low)}")
        return cls(low, high, flags["minExclusive"], flags["maxExclusive"])


@dataclass(frozen=True)
class AttenuationWeight:
    range: Range
    weight: float


@dataclass(frozen=True)
class MinutesAtAttenuationFilter:
    """Drop a window when its whole minutes at an attenuation range fall in ``drop_if_minutes``."""

    attenuation: Range
    drop_if_minutes: Range


@dataclass(frozen=True)
class RiskLevelMapping:
    range: Range
    risk_level: RiskLevel


@dataclass(frozen=True)
class TrlEncoding:
    """TRL = report-type offset + infectiousness offset (how CWA smuggles a TRL through GAEN v2)."""

    infectiousness_offset_standard: int
    infectiousness_offset_high: int
    report_type_offset_recursive: int
    report_type_offset_self_report: int
    report_type_offset_confirmed_clinical_diagnosis: int
    report_type_offset_confirmed_test: int

    _JSON_KEYS: ClassVar[dict[str, str]] = {
        "infectiousnessOffsetStandard": "infectiousness_offset_standard",
        "infectiousnessOffsetHigh": "infectiousness_offset_high",
        "reportTypeOffsetRecursive": "report_type_offset_recursive",
        "reportTypeOffsetSelfReport": "report_type_offset_self_report",
        "reportTypeOffsetConfirmedClinicalDiagnosis": "report_type_offset_confirmed_clinical_diagnosis",
        "reportTypeOffsetConfirmedTest": "report_type_offset_confirmed_test",
    }

    @classmethod
    def from_dict(cls, data: object, where: str) -> TrlEncoding:
        if not isinstance(data, Mapping):
            raise RiskConfigError(f"{where}: expected a table, got {data!r}")
        check_keys(data, where, set(cls._JSON_KEYS), set(cls._JSON_KEYS))
        return cls(**{attr: int_setting(data, key, where) for key, attr in cls._JSON_KEYS.items()})

    def encode(self, report_type: ReportType, infectiousness: Infectiousness) -> int | None:
        """None for report types that carry no TRL (UNKNOWN, REVOKED)."""
        offsets = {
            ReportType.RECURSIVE: self.report_type_offset_recursive,
            ReportType.SELF_REPORT: self.report_type_offset_self_report,
            ReportType.CONFIRMED_CLINICAL_DIAGNOSIS: self.report_type_offset_confirmed_clinical_diagnosis,
            ReportType.CONFIRMED_TEST: self.report_type_offset_confirmed_test,
        }
        if report_type not in offsets:
            return None
        if infectiousness == Infectiousness.HIGH:
            return offsets[report_type] + self.infectiousness_offset_high
        return offsets[report_type] + self.infectiousness_offset_standard


_NO_WEIGHT_LABEL = "outside every weighted range"


@dataclass(frozen=True)
class CwaModel:
    """The Corona-Warn-App exposure-window model, configured with CWA's own configuration shape.

    Per window: drop it if a minutes-at-attenuation filter says so; TRL = the key's own TRL if the window
    has one, else report-type offset + infectiousness offset; drop it if a TRL filter says so; transmission
    risk value = ``transmissionRiskValueMapping[TRL]`` (0 for an unlisted TRL) or TRL x
    ``transmissionRiskLevelMultiplier``; weighted minutes = sum over scan instances of
    max(seconds, 0) x weight(min attenuation) / 60, the weight being the first weight range containing the
    scan instance's **minimum** attenuation (0 if none); normalized time = value x weighted minutes, mapped
    to a per-window level (a value no range covers is a configuration error). Per day: normalized times
    summed, rounded half-up to one decimal, mapped to the day's level; a day no range covers has no risk
    (CWA leaves it out). Minimum distinct encounters per day and level: distinct (TRL, calibration
    confidence) among that day's windows of that per-window level.
    """

    name: ClassVar[str] = "cwa"

    minutes_at_attenuation_weights: tuple[AttenuationWeight, ...]
    normalized_time_per_window_to_risk_level: tuple[RiskLevelMapping, ...]
    normalized_time_per_day_to_risk_level: tuple[RiskLevelMapping, ...]
    trl_encoding: TrlEncoding
    transmission_risk_values: Mapping[int, float] | None = None
    transmission_risk_level_multiplier: float | None = None
    minutes_at_attenuation_filters: tuple[MinutesAtAttenuationFilter, ...] = ()
    trl_filters: tuple[Range, ...] = ()

    _KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "minutesAtAttenuationFilters",
            "trlFilters",
            "minutesAtAttenuationWeights",
            "normalizedTimePerEWToRiskLevelMapping",
            "normalizedTimePerDayToRiskLevelMapping",
            "trlEncoding",
            "transmissionRiskLevelEncoding",
            "transmissionRiskValueMapping",
            "transmissionRiskLevelMultiplier",
        }
    )

    def __post_init__(self) -> None:
        if (self.transmission_risk_values is None) == (self.transmission_risk_level_multiplier is None):
            raise RiskConfigError(
                "CwaModel: give exactly one of transmissionRiskValueMapping and transmissionRiskLevelMultiplier"
            )
        if self.transmission_risk_values is not None:
            object.__setattr__(self, "transmission_risk_values", MappingProxyType(dict(self.transmission_risk_values)))
        if not self.normalized_time_per_window_to_risk_level:
            raise RiskConfigError("CwaModel: normalizedTimePerEWToRiskLevelMapping must not be empty")
        if not self.normalized_time_per_day_to_risk_level:
            raise RiskConfigError("CwaModel: normalizedTimePerDayToRiskLevelMapping must not be empty")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk.cwa") -> CwaModel:
        """Build from CWA's risk-calculation configuration as JSON/TOML (camelCase keys, as CWA ships it)."""
        check_keys(
            data,
            where,
            set(cls._KNOWN_KEYS),
            {
                "minutesAtAttenuationWeights",
                "normalizedTimePerEWToRiskLevelMapping",
                "normalizedTimePerDayToRiskLevelMapping",
            },
        )
        filters = _attenuation_filters(data, where)
        trl_filters = _trl_filters(data, where)
        weights = _attenuation_weights(data, where)
        encoding = _trl_encoding(data, where)
        values, multiplier = _transmission_risk(data, where)
        return cls(
            minutes_at_attenuation_weights=weights,
            normalized_time_per_window_to_risk_level=_level_mappings(
                data, where, "normalizedTimePerEWToRiskLevelMapping"
            ),
            normalized_time_per_day_to_risk_level=_level_mappings(
                data, where, "normalizedTimePerDayToRiskLevelMapping"
            ),
            trl_encoding=encoding,
            transmission_risk_values=values,
            transmission_risk_level_multiplier=multiplier,
            minutes_at_attenuation_filters=filters,
            trl_filters=trl_filters,
        )

    def describe(self) -> str:
        weights = ", ".join(f"{w.range} dB x {figure(w.weight)}" for w in self.minutes_at_attenuation_weights)
        per_day = ", ".join(f"{m.range} -> {m.risk_level.name}" for m in self.normalized_time_per_day_to_risk_level)
        return (
            f"Corona-Warn-App: minimum attenuation weighted {weights}; normalized time = "
            f"transmission risk value x weighted minutes; per day {per_day}"
        )

    @property
    def high_risk_threshold(self) -> float | None:
        """The lowest per-day normalized time that maps to HIGH, for the explanation."""
        lows = [m.range.min for m in self.normalized_time_per_day_to_risk_level if m.risk_level == RiskLevel.HIGH]
        return min(lows) if lows else None

    def _weight_index(self, attenuation: int) -> int | None:
        for i, w in enumerate(self.minutes_at_attenuation_weights):
            if attenuation in w.range:
                return i
        return None

    def _transmission_risk_value(self, trl: int) -> float:
        if self.transmission_risk_values is not None:
            return self.transmission_risk_values.get(trl, 0.0)
        return trl * (self.transmission_risk_level_multiplier or 0.0)

    def _buckets(self, seconds: Sequence[float]) -> tuple[BucketMinutes, ...]:
        labels = [f"{w.range} dB" for w in self.minutes_at_attenuation_weights] + [_NO_WEIGHT_LABEL]
        weights = [w.weight for w in self.minutes_at_attenuation_weights] + [0.0]
        return tuple(BucketMinutes(label, s / 60, w) for label, s, w in zip(labels, seconds, weights, strict=True))

    def _assess_window(self, window: ExposureWindow) -> WindowAssessment:
        seconds = [0] * (len(self.minutes_at_attenuation_weights) + 1)
        for si in window.scan_instances:
            index = self._weight_index(si.min_attenuation)
            seconds[-1 if index is None else index] += si.counted_seconds
        buckets = self._buckets(seconds)
        common = {
            "buckets": buckets,
            "calibration_confidence": window.calibration_confidence,
            "scan_instances": len(window.scan_instances),
            "scan_instances_with_assumed_tx_power": window.scan_instances_with_assumed_tx_power,
            "assumed_tx_power": window.assumed_tx_power,
        }
        dropped = dropped_by_gaen(window) or self._dropped_by_minutes(window)
        if dropped is not None:
            return WindowAssessment(counted=False, reason=dropped, score=0.0, **common)
        trl_and_source = self._trl_of(window)
        if trl_and_source is None:
            return WindowAssessment(
                counted=False,
                reason=f"dropped: report type {window.report_type.name} has no TRL encoding and the key gave no TRL",
                score=0.0,
                **common,
            )
        trl, source = trl_and_source
        for r in self.trl_filters:
            if trl in r:
                return WindowAssessment(
                    counted=False,
                    reason=f"dropped: TRL {trl} ({source}) is in the trlFilter drop range {r}",
                    score=0.0,
                    transmission_risk_level=trl,
                    **common,
                )
        value = self._transmission_risk_value(trl)
        weighted = sum(b.weighted_minutes for b in buckets)
        normalized = value * weighted
        level = self._window_level(normalized)
        return WindowAssessment(
            counted=True,
            reason=(
                f"TRL {trl} ({source}) -> transmission risk value {figure(value)} x {figure(weighted)} "
                f"weighted minutes = normalized time {figure(normalized)} -> {level.name}"
            ),
            score=normalized,
            risk_level=level,
            transmission_risk_level=trl,
            transmission_risk_value=value,
            **common,
        )

    def _dropped_by_minutes(self, window: ExposureWindow) -> str | None:
        """The first minutesAtAttenuationFilter that drops the window, as the reason it says."""
        for f in self.minutes_at_attenuation_filters:
            at = sum(si.counted_seconds for si in window.scan_instances if si.min_attenuation in f.attenuation)
            if at // 60 in f.drop_if_minutes:
                return (
                    f"dropped: {at // 60} whole minute(s) at {f.attenuation} dB is in the drop range "
                    f"{f.drop_if_minutes} of a minutesAtAttenuationFilter"
                )
        return None

    def _trl_of(self, window: ExposureWindow) -> tuple[int, str] | None:
        """The window's TRL and where it came from; None when neither the key nor the encoding gives one."""
        if window.transmission_risk_level is not None:
            return window.transmission_risk_level, "from the key"
        encoded = self.trl_encoding.encode(window.report_type, window.infectiousness)
        if encoded is None:
            return None
        return encoded, f"report type {window.report_type.name} + infectiousness {window.infectiousness.name}"

    def _window_level(self, normalized: float) -> RiskLevel:
        level = next(
            (m.risk_level for m in self.normalized_time_per_window_to_risk_level if normalized in m.range),
            None,
        )
        if level is None:
            raise RiskConfigError(
                f"risk.cwa.normalizedTimePerEWToRiskLevelMapping: no range covers a window's normalized time "
                f"{figure(normalized)}; the ranges must cover every value from 0 up"
            )
        return level

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment:
        days = []
        threshold = self.high_risk_threshold
        for day, day_windows in sorted(by_day(windows).items()):
            assessed = tuple(self._assess_window(w) for w in day_windows)
            counted = [a for a in assessed if a.counted]
            seconds = [0.0] * (len(self.minutes_at_attenuation_weights) + 1)
            for a in counted:
                for i, b in enumerate(a.buckets):
                    seconds[i] += b.minutes * 60
            normalized = _round_half_up_1(sum(a.score for a in counted))
            mapping = next((m for m in self.normalized_time_per_day_to_risk_level if normalized in m.range), None)
            level = mapping.risk_level if counted and mapping is not None else RiskLevel.NONE

            def encounters(wanted: RiskLevel, counted: list[WindowAssessment] = counted) -> int:
                return len(
                    {(a.transmission_risk_level, a.calibration_confidence) for a in counted if a.risk_level == wanted}
                )

            days.append(
                DayAssessment(
                    day=day,
                    buckets=self._buckets(seconds),
                    score=normalized,
                    threshold=threshold,
                    risk_level=level,
                    reason=self._reason(normalized, mapping, len(counted), len(assessed), threshold),
                    windows=assessed,
                    notes=tx_notes([w for w, a in zip(day_windows, assessed, strict=True) if a.counted]),
                    distinct_encounters_low=encounters(RiskLevel.LOW),
                    distinct_encounters_high=encounters(RiskLevel.HIGH),
                )
            )
        result = Assessment(self.name, self.describe(), "normalized time", tuple(days), counts_encounters=True)
        _log.debug("cwa: %d day(s) assessed, risk level %s", len(days), result.risk_level.name)
        return result

    def _reason(
        self,
        normalized: float,
        mapping: RiskLevelMapping | None,
        counted: int,
        total: int,
        threshold: float | None,
    ) -> str:
        if counted == 0:
            return f"none of the {total} exposure window(s) counted, so the day carries no risk."
        base = f"the normalized times of {counted} window(s) add up to {figure(normalized)} (rounded to one decimal)"
        if mapping is None:
            lowest = min(m.range.min for m in self.normalized_time_per_day_to_risk_level)
            return f"{base}, which no per-day range covers (the lowest starts at {figure(lowest)}): no risk."
        crossed = mapping.risk_level == RiskLevel.HIGH
        if crossed:
            tail = "notify."
        elif threshold is None:
            tail = "no per-day range maps to HIGH: no notification."
        else:
            tail = f"below the high-risk threshold of {figure(threshold)}: no notification."
        return f"{base}, in {mapping.range} -> {mapping.risk_level.name}; {tail}"


def _round_half_up_1(value: float) -> float:
    """One decimal, half up, as CWA rounds a day's normalized time (3 x 1.2 must not end up as 3.5999)."""
    return math.floor(value * 10 + 0.5) / 10


# --------------------------------------------------------------------------------------------------------
# Reading CWA's configuration shape (camelCase keys, lists of tables), one part at a time


def _tables(data: Mapping[str, Any], where: str, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The tables of the list under ``key`` (none when absent), each with its dotted path for messages."""
    value = data.get(key, [])
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise RiskConfigError(f"{where}.{key}: expected a list, got {value!r}")
    out = []
    for i, item in enumerate(value):
        item_where = f"{where}.{key}[{i}]"
        if not isinstance(item, Mapping):
            raise RiskConfigError(f"{item_where}: expected a table, got {item!r}")
        out.append((item_where, item))
    return out


def _attenuation_filters(data: Mapping[str, Any], where: str) -> tuple[MinutesAtAttenuationFilter, ...]:
    filters = []
    for w, item in _tables(data, where, "minutesAtAttenuationFilters"):
        check_keys(item, w, {"attenuationRange", "dropIfMinutesInRange"}, {"attenuationRange", "dropIfMinutesInRange"})
        filters.append(
            MinutesAtAttenuationFilter(
                Range.from_dict(item["attenuationRange"], f"{w}.attenuationRange"),
                Range.from_dict(item["dropIfMinutesInRange"], f"{w}.dropIfMinutesInRange"),
            )
        )
    return tuple(filters)


def _trl_filters(data: Mapping[str, Any], where: str) -> tuple[Range, ...]:
    filters = []
    for w, item in _tables(data, where, "trlFilters"):
        check_keys(item, w, {"dropIfTrlInRange"}, {"dropIfTrlInRange"})
        filters.append(Range.from_dict(item["dropIfTrlInRange"], f"{w}.dropIfTrlInRange"))
    return tuple(filters)


def _attenuation_weights(data: Mapping[str, Any], where: str) -> tuple[AttenuationWeight, ...]:
    weights = []
    for w, item in _tables(data, where, "minutesAtAttenuationWeights"):
        check_keys(item, w, {"attenuationRange", "weight"}, {"attenuationRange", "weight"})
        weight = number_setting(item["weight"], f"{w}.weight")
        if weight < 0:
            raise RiskConfigError(f"{w}.weight: must not be negative, got {figure(weight)}")
        weights.append(AttenuationWeight(Range.from_dict(item["attenuationRange"], f"{w}.attenuationRange"), weight))
    return tuple(weights)


def _level_mappings(data: Mapping[str, Any], where: str, key: str) -> tuple[RiskLevelMapping, ...]:
    out = []
    for w, item in _tables(data, where, key):
        check_keys(item, w, {"normalizedTimeRange", "riskLevel"}, {"normalizedTimeRange", "riskLevel"})
        level = as_enum(RiskLevel, item["riskLevel"], f"{w}.riskLevel")
        if level == RiskLevel.NONE:
            raise RiskConfigError(f"{w}.riskLevel: must be LOW (1) or HIGH (2)")
        out.append(RiskLevelMapping(Range.from_dict(item["normalizedTimeRange"], f"{w}.normalizedTimeRange"), level))
    if not out:
        raise RiskConfigError(f"{where}.{key}: must list at least one range")
    return tuple(out)


def _trl_encoding(data: Mapping[str, Any], where: str) -> TrlEncoding:
    """CWA ships the encoding as ``trlEncoding`` in some versions and ``transmissionRiskLevelEncoding`` in others."""
    if "trlEncoding" in data and "transmissionRiskLevelEncoding" in data:
        raise RiskConfigError(f"{where}.transmissionRiskLevelEncoding: give it or trlEncoding, not both")
    encoding_key = "trlEncoding" if "trlEncoding" in data else "transmissionRiskLevelEncoding"
    if encoding_key not in data:
        raise RiskConfigError(f"{where}.trlEncoding: missing")
    return TrlEncoding.from_dict(data[encoding_key], f"{where}.{encoding_key}")


def _transmission_risk(data: Mapping[str, Any], where: str) -> tuple[dict[int, float] | None, float | None]:
    """Exactly one of the value table (TRL -> value) and the multiplier (value = TRL x multiplier)."""
    if "transmissionRiskValueMapping" in data and "transmissionRiskLevelMultiplier" in data:
        raise RiskConfigError(
            f"{where}.transmissionRiskLevelMultiplier: give it or transmissionRiskValueMapping, not both"
        )
    if "transmissionRiskValueMapping" in data:
        values: dict[int, float] = {}
        for w, item in _tables(data, where, "transmissionRiskValueMapping"):
            check_keys(
                item,
                w,
                {"transmissionRiskLevel", "transmissionRiskValue"},
                {"transmissionRiskLevel", "transmissionRiskValue"},
            )
            trl = int_setting(item, "transmissionRiskLevel", w)
            if trl in values:
                raise RiskConfigError(f"{w}.transmissionRiskLevel: {trl} is listed twice")
            value = number_setting(item["transmissionRiskValue"], f"{w}.transmissionRiskValue")
            if value < 0:
                raise RiskConfigError(f"{w}.transmissionRiskValue: must not be negative, got {figure(value)}")
            values[trl] = value
        return values, None
    if "transmissionRiskLevelMultiplier" in data:
        multiplier = number_setting(data["transmissionRiskLevelMultiplier"], f"{where}.transmissionRiskLevelMultiplier")
        if multiplier < 0:
            raise RiskConfigError(f"{where}.transmissionRiskLevelMultiplier: must not be negative")
        return None, multiplier
    raise RiskConfigError(f"{where}.transmissionRiskValueMapping: missing (or give transmissionRiskLevelMultiplier)")

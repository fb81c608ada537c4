"""Exposure risk: from sightings of matched IDs to a per-day score, a notify decision and its explanation.

The pipeline is the one GAEN v2 made common currency, so that a published scoring model can be reused as is:

1. sightings of one matched key → **exposure windows** (at most 30 min, one UTC day, one key) made of **scan
   instances** (typical and minimum attenuation, seconds since the last scan);
2. a **model** turns windows into minutes per attenuation bucket, weights them, sums them per day and
   decides per day whether the threshold is crossed;
3. every result carries its **explanation**: per day the minutes in each bucket, the weights, the score,
   the threshold and a sentence why it did or did not cross.

Attenuation is ``TX power - (RSSI + receiver correction)``: what the radio path swallowed, which is what
distance shows up as once both phones' hardware differences are calibrated out.

Two models share one interface (:class:`RiskModel`): :class:`SwissCovidModel` (the default: thresholds
55/63 dB on the typical attenuation, weights 1.0/0.5/0, notify at >= 15 weighted minutes on a day) and
:class:`CwaModel`, built from the Corona-Warn-App risk-calculation configuration.

Privacy: this module never sees a key, and IDs only pass through the sighting builder, which reads the
times and signal strengths of a window and drops the rest. Nothing in a result or an explanation can
therefore reveal an ID. The module is pure: no clock, no I/O; days are unix day numbers
(``unix_seconds // 86400``) the caller supplies.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from agent.clock import DAY, day_to_iso
from agent.schemes.published import ReportType
from agent.sightings import SCAN_WINDOW_SECONDS, SightingWindow

_log = logging.getLogger(__name__)

MAX_ATTENUATION_DB = 255
DEFAULT_MAX_WINDOW_SECONDS = 30 * 60


class RiskConfigError(ValueError):
    """A risk setting is invalid. The message starts with the dotted path of the offending key."""


class RiskInputError(ValueError):
    """Sightings or exposure windows handed to this module are inconsistent. Messages never carry an ID."""


# --------------------------------------------------------------------------------------------------------
# GAEN v2 vocabulary (same numeric values as the Exposure Notification API, so configs port unchanged)


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


def _enum(cls: type[_E], value: object, where: str, error: type[ValueError] = RiskConfigError) -> _E:
    """An enum member from its number or its (case-insensitive) name, or an error naming ``where``."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.strip().upper()]
        except KeyError:
            pass
    elif _is_int(value):
        try:
            return cls(value)
        except ValueError:
            pass
    names = ", ".join(f"{m.name.lower()} ({m.value})" for m in cls)
    raise error(f"{where}: {value!r} is not a {cls.__name__}; use one of {names}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True)
class ScanInstance:
    """One scan's view of one exposure source: attenuations in dB and the time it stands for.

    ``seconds_since_last_scan`` may be zero or negative (GAEN delivers that after a clock jump); every model
    counts such time as zero rather than rejecting the window.
    """

    typical_attenuation: int
    min_attenuation: int
    seconds_since_last_scan: int

    def __post_init__(self) -> None:
        for name in ("typical_attenuation", "min_attenuation"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= MAX_ATTENUATION_DB:
                raise RiskInputError(
                    f"ScanInstance.{name} must be an integer dB value in 0..{MAX_ATTENUATION_DB}, got {value!r}"
                )
        if not _is_int(self.seconds_since_last_scan):
            raise RiskInputError(
                f"ScanInstance.seconds_since_last_scan must be an integer, got {self.seconds_since_last_scan!r}"
            )

    @property
    def counted_seconds(self) -> int:
        return max(self.seconds_since_last_scan, 0)


@dataclass(frozen=True)
class ExposureWindow:
    """Up to 30 minutes of one key on one UTC day, with the key's attributes (GAEN v2 semantics).

    ``day`` is the unix day number (``unix_seconds // 86400``). ``transmission_risk_level`` is the key's own
    TRL (1..8) when the list carried one; the CWA model then uses it instead of deriving it from report
    type and infectiousness. ``assumed_tx_power``/``scan_instances_with_assumed_tx_power`` record that the
    sender's TX power was unknown and a default was used, so the explanation can say so.
    """

    day: int
    scan_instances: tuple[ScanInstance, ...]
    report_type: ReportType = ReportType.CONFIRMED_TEST
    infectiousness: Infectiousness = Infectiousness.STANDARD
    calibration_confidence: CalibrationConfidence = CalibrationConfidence.LOWEST
    transmission_risk_level: int | None = None
    assumed_tx_power: int | None = None
    scan_instances_with_assumed_tx_power: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.day) or self.day < 0:
            raise RiskInputError(f"ExposureWindow.day must be a non-negative unix day number, got {self.day!r}")
        instances = tuple(self.scan_instances)
        for si in instances:
            if not isinstance(si, ScanInstance):
                raise RiskInputError(f"ExposureWindow.scan_instances must hold ScanInstance values, got {si!r}")
        object.__setattr__(self, "scan_instances", instances)
        object.__setattr__(
            self,
            "report_type",
            _enum(ReportType, self.report_type, "ExposureWindow.report_type", RiskInputError),
        )
        object.__setattr__(
            self,
            "infectiousness",
            _enum(Infectiousness, self.infectiousness, "ExposureWindow.infectiousness", RiskInputError),
        )
        object.__setattr__(
            self,
            "calibration_confidence",
            _enum(
                CalibrationConfidence,
                self.calibration_confidence,
                "ExposureWindow.calibration_confidence",
                RiskInputError,
            ),
        )
        _check_trl(self.transmission_risk_level, "ExposureWindow.transmission_risk_level")
        assumed = self.scan_instances_with_assumed_tx_power
        if not _is_int(assumed) or not 0 <= assumed <= len(instances):
            raise RiskInputError(
                "ExposureWindow.scan_instances_with_assumed_tx_power must be between 0 and the number of "
                f"scan instances ({len(instances)}), got {assumed!r}"
            )
        if assumed and self.assumed_tx_power is None:
            raise RiskInputError("ExposureWindow.assumed_tx_power must be set when some TX power was assumed")

    @property
    def date(self) -> str:
        return day_to_iso(self.day)


def _check_trl(trl: object, where: str) -> None:
    if trl is not None and (not _is_int(trl) or not 1 <= trl <= 8):
        raise RiskInputError(f"{where} must be 1..8 or None (unknown), got {trl!r}")


@dataclass(frozen=True)
class KeyAttributes:
    """What a published key says about its uploader, as the matcher read it from the list (no key bytes).

    ``report_type`` None or UNKNOWN and ``days_since_onset`` None are resolved by
    :class:`DiagnosisKeyMapping`, like GAEN's ``DiagnosisKeysDataMapping``.
    """

    transmission_risk_level: int | None = None
    report_type: ReportType | None = None
    days_since_onset: int | None = None

    def __post_init__(self) -> None:
        _check_trl(self.transmission_risk_level, "KeyAttributes.transmission_risk_level")
        if self.report_type is not None:
            object.__setattr__(
                self,
                "report_type",
                _enum(ReportType, self.report_type, "KeyAttributes.report_type", RiskInputError),
            )
        if self.days_since_onset is not None and not _is_int(self.days_since_onset):
            raise RiskInputError(
                f"KeyAttributes.days_since_onset must be an integer or None, got {self.days_since_onset!r}"
            )


# --------------------------------------------------------------------------------------------------------
# Building exposure windows


@dataclass(frozen=True)
class DiagnosisKeyMapping:
    """How a key's days-since-onset and report type become a window's infectiousness and report type.

    The default says every day is STANDARD and a missing report type is CONFIRMED_TEST, which is what a
    model that ignores infectiousness (SwissCovid) assumes anyway. GAEN's own rule that unlisted days are
    NONE is available by setting ``infectiousness_for_unlisted_days`` to NONE.
    """

    days_since_onset_to_infectiousness: Mapping[int, Infectiousness] = field(default_factory=dict)
    infectiousness_for_unlisted_days: Infectiousness = Infectiousness.STANDARD
    infectiousness_when_onset_missing: Infectiousness = Infectiousness.STANDARD
    report_type_when_missing: ReportType = ReportType.CONFIRMED_TEST

    def __post_init__(self) -> None:
        where = "DiagnosisKeyMapping"
        table = {}
        for day, value in self.days_since_onset_to_infectiousness.items():
            if not _is_int(day):
                raise RiskConfigError(f"{where}.days_since_onset_to_infectiousness: key {day!r} is not an integer")
            table[day] = _enum(Infectiousness, value, f"{where}.days_since_onset_to_infectiousness[{day}]")
        object.__setattr__(self, "days_since_onset_to_infectiousness", MappingProxyType(table))
        for name, cls in (
            ("infectiousness_for_unlisted_days", Infectiousness),
            ("infectiousness_when_onset_missing", Infectiousness),
            ("report_type_when_missing", ReportType),
        ):
            object.__setattr__(self, name, _enum(cls, getattr(self, name), f"{where}.{name}"))
        if self.report_type_when_missing in (ReportType.UNKNOWN, ReportType.REVOKED):
            raise RiskConfigError(f"{where}.report_type_when_missing must name a real diagnosis, not UNKNOWN/REVOKED")

    def infectiousness(self, days_since_onset: int | None) -> Infectiousness:
        if days_since_onset is None:
            return self.infectiousness_when_onset_missing
        return self.days_since_onset_to_infectiousness.get(days_since_onset, self.infectiousness_for_unlisted_days)

    def report_type(self, report_type: ReportType | None) -> ReportType:
        if report_type is None or report_type == ReportType.UNKNOWN:
            return self.report_type_when_missing
        return report_type

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str = "risk.exposure_windows.diagnosis_keys"
    ) -> DiagnosisKeyMapping:
        """Keys: days_since_onset_to_infectiousness (table "day" = "none"|"standard"|"high"),
        infectiousness_for_unlisted_days, infectiousness_when_onset_missing, report_type_when_missing."""
        _check_keys(
            data,
            where,
            {
                "days_since_onset_to_infectiousness",
                "infectiousness_for_unlisted_days",
                "infectiousness_when_onset_missing",
                "report_type_when_missing",
            },
        )
        table_where = f"{where}.days_since_onset_to_infectiousness"
        raw = data.get("days_since_onset_to_infectiousness", {})
        if not isinstance(raw, Mapping):
            raise RiskConfigError(f"{table_where}: expected a table of day = infectiousness")
        table: dict[int, Infectiousness] = {}
        for key, value in raw.items():
            try:
                day = int(key)
            except (TypeError, ValueError):
                raise RiskConfigError(f"{table_where}: key {key!r} is not a whole number of days") from None
            table[day] = _enum(Infectiousness, value, f"{table_where}.{key}")
        kwargs: dict[str, Any] = {"days_since_onset_to_infectiousness": table}
        for name, enum_cls in (
            ("infectiousness_for_unlisted_days", Infectiousness),
            ("infectiousness_when_onset_missing", Infectiousness),
            ("report_type_when_missing", ReportType),
        ):
            if name in data:
                kwargs[name] = _enum(enum_cls, data[name], f"{where}.{name}")
        try:
            return cls(**kwargs)
        except RiskConfigError as exc:
            raise RiskConfigError(f"{where}{str(exc).removeprefix(cls.__name__)}") from None


@dataclass(frozen=True)
class WindowConfig:
    """How sightings become exposure windows.

    ``scan_interval_seconds`` is the period at which the scanner looks (60 s = continuous scanning, the
    length of one sighting window; 300 s for a scanner that listens a few seconds every 5 minutes). It caps
    the time one sighting window can stand for. ``default_tx_power`` is used when a sender's TX power is
    unknown (0 dBm, nominal BLE output); every window that needed it says so in the explanation.
    """

    scan_interval_seconds: int = SCAN_WINDOW_SECONDS
    max_window_seconds: int = DEFAULT_MAX_WINDOW_SECONDS
    default_tx_power: int = 0
    diagnosis_keys: DiagnosisKeyMapping = field(default_factory=DiagnosisKeyMapping)

    def __post_init__(self) -> None:
        where = "WindowConfig"
        if not _is_int(self.scan_interval_seconds) or self.scan_interval_seconds < SCAN_WINDOW_SECONDS:
            raise RiskConfigError(
                f"{where}.scan_interval_seconds must be a whole number >= {SCAN_WINDOW_SECONDS} "
                f"(the sighting window length), got {self.scan_interval_seconds!r}"
            )
        if (
            not _is_int(self.max_window_seconds)
            or self.max_window_seconds < SCAN_WINDOW_SECONDS
            or self.max_window_seconds > DAY
        ):
            raise RiskConfigError(
                f"{where}.max_window_seconds must be between {SCAN_WINDOW_SECONDS} and {DAY}, "
                f"got {self.max_window_seconds!r}"
            )
        if not _is_int(self.default_tx_power) or not -127 <= self.default_tx_power <= 127:
            raise RiskConfigError(f"{where}.default_tx_power must be an int8 dBm value, got {self.default_tx_power!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk.exposure_windows") -> WindowConfig:
        """Keys: scan_interval_seconds, max_window_minutes, default_tx_power_dbm, diagnosis_keys (table)."""
        _check_keys(
            data,
            where,
            {"scan_interval_seconds", "max_window_minutes", "default_tx_power_dbm", "diagnosis_keys"},
        )
        kwargs: dict[str, Any] = {}
        if "scan_interval_seconds" in data:
            value = _int_setting(data, "scan_interval_seconds", where)
            if value < SCAN_WINDOW_SECONDS:
                raise RiskConfigError(
                    f"{where}.scan_interval_seconds: must be >= {SCAN_WINDOW_SECONDS} (the sighting window "
                    f"length), got {value}"
                )
            kwargs["scan_interval_seconds"] = value
        if "max_window_minutes" in data:
            value = _int_setting(data, "max_window_minutes", where)
            if not 1 <= value <= DAY // 60:
                raise RiskConfigError(f"{where}.max_window_minutes: must be 1..1440, got {value}")
            kwargs["max_window_seconds"] = value * 60
        if "default_tx_power_dbm" in data:
            value = _int_setting(data, "default_tx_power_dbm", where)
            if not -127 <= value <= 127:
                raise RiskConfigError(f"{where}.default_tx_power_dbm: must be -127..127 dBm, got {value}")
            kwargs["default_tx_power"] = value
        if "diagnosis_keys" in data:
            kwargs["diagnosis_keys"] = DiagnosisKeyMapping.from_dict(data["diagnosis_keys"], f"{where}.diagnosis_keys")
        return cls(**kwargs)


@dataclass(frozen=True)
class AttenuationSample:
    """What one exposure source looked like in one scan window: the unit windows are built from.

    The sighting builder makes these from the store's aggregates; the backend can make them directly from
    a device's per-EBID attenuation report. ``count`` weights the typical attenuation when two samples of
    the same source share a window (two IDs of one key around a rotation); it never adds time.
    """

    window_start: int
    typical_attenuation: float
    min_attenuation: float
    count: int = 1
    assumed_tx_power: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.window_start) or self.window_start < 0:
            raise RiskInputError(
                f"AttenuationSample.window_start must be non-negative unix seconds, got {self.window_start!r}"
            )
        for name in ("typical_attenuation", "min_attenuation"):
            if not _is_number(getattr(self, name)):
                raise RiskInputError(f"AttenuationSample.{name} must be a finite number, got {getattr(self, name)!r}")
        if not _is_int(self.count) or self.count < 1:
            raise RiskInputError(f"AttenuationSample.count must be a positive integer, got {self.count!r}")


def attenuation_db(tx_power: float, rssi: float, receiver_correction: float) -> float:
    """Attenuation = TX power - (RSSI + receiver correction)."""
    return tx_power - (rssi + receiver_correction)


def _to_db(value: float) -> int:
    """Half-up rounding into the 0..255 range GAEN reports; a negative attenuation (uncalibrated sender
    louder than its stated power) means 'as close as it gets', so it clamps to 0 rather than failing."""
    return min(MAX_ATTENUATION_DB, max(0, math.floor(value + 0.5)))


def samples_from_sightings(
    windows: Sequence[SightingWindow],
    *,
    tx_power: int | Sequence[int | None] | None = None,
    receiver_correction: float = 0.0,
    default_tx_power: int = 0,
) -> tuple[AttenuationSample, ...]:
    """One sample per sighting window: typical attenuation from the mean RSSI, minimum from the max RSSI.

    TX power per window, first that is known: ``tx_power`` (one value for all windows, or one per window,
    as the matcher decrypted it from the metadata), then the window's own plaintext ``tx_power`` (EBID
    service data, TX Power AD), then ``default_tx_power`` (flagged as assumed).
    """
    if isinstance(tx_power, Sequence):
        if len(tx_power) != len(windows):
            raise RiskInputError(
                f"tx_power has {len(tx_power)} values for {len(windows)} sighting windows; give one per window"
            )
        given: Sequence[int | None] = tx_power
    else:
        given = [tx_power] * len(windows)
    if not _is_number(receiver_correction):
        raise RiskInputError(f"receiver_correction must be a finite number of dB, got {receiver_correction!r}")
    schemes = {w.scheme for w in windows}
    if len(schemes) > 1:
        raise RiskInputError(f"sighting windows of one key must share one scheme, got {sorted(schemes)}")
    samples = []
    for window, power in zip(windows, given, strict=True):
        _check_sighting_window(window)
        resolved = power if power is not None else window.tx_power
        assumed = resolved is None
        if resolved is None:
            resolved = default_tx_power
        elif not _is_int(resolved) or not -127 <= resolved <= 127:
            raise RiskInputError(
                f"TX power for the sighting window at {window.window_start} must be an int8 dBm value, got {resolved!r}"
            )
        samples.append(
            AttenuationSample(
                window_start=window.window_start,
                typical_attenuation=attenuation_db(resolved, window.rssi_mean, receiver_correction),
                min_attenuation=attenuation_db(resolved, window.rssi_max, receiver_correction),
                count=window.count,
                assumed_tx_power=assumed,
            )
        )
    return tuple(samples)


def _check_sighting_window(window: SightingWindow) -> None:
    where = f"sighting window at {window.window_start}"
    if not _is_int(window.window_start) or window.window_start < 0:
        raise RiskInputError(f"{where}: window_start must be non-negative unix seconds")
    if not _is_int(window.count) or window.count < 1:
        raise RiskInputError(f"{where}: count must be >= 1, got {window.count!r}")
    if window.rssi_min > window.rssi_max:
        raise RiskInputError(f"{where}: rssi_min {window.rssi_min} is above rssi_max {window.rssi_max}")
    if not window.count * window.rssi_min <= window.rssi_sum <= window.count * window.rssi_max:
        raise RiskInputError(
            f"{where}: rssi_sum {window.rssi_sum} is impossible for {window.count} sightings between "
            f"{window.rssi_min} and {window.rssi_max} dBm"
        )


def exposure_windows_from_samples(
    samples: Iterable[AttenuationSample],
    *,
    key: KeyAttributes | None = None,
    calibration_confidence: CalibrationConfidence = CalibrationConfidence.LOWEST,
    config: WindowConfig | None = None,
) -> tuple[ExposureWindow, ...]:
    """Group one key's samples into GAEN-like exposure windows (<= ``max_window_seconds``, one UTC day).

    Samples that share a scan window are merged first (count-weighted mean of the typical attenuation,
    minimum of the minimum), so a source counts once per window however many IDs or callbacks it had.

    Seconds since last scan: a sample stands for the time since the previous sample of the same key,
    capped at the scan interval; the first sample of a key stands for one scan interval. With continuous
    scanning (interval = window length) every sighted minute is thus exactly 60 s, and gaps add nothing.
    With duty-cycled scanning (say every 300 s) a sighting stands for the unobserved time since the last
    scan, like GAEN's ``secondsSinceLastScan``, but never for more than the real gap, so denser sightings
    are not double counted. The previous sample is looked up across window and day boundaries, so a
    30-minute split in a long encounter does not add a scan interval.

    With continuous scanning another sighted minute can only add time, so more sightings never lower a
    score. With duty-cycled scanning a sighting between two others takes part of the later one's time and
    gives it its own attenuation: the more faithful account, but then a far sighting can lower a score.
    """
    key = key or KeyAttributes()
    config = config or WindowConfig()
    calibration_confidence = _enum(
        CalibrationConfidence, calibration_confidence, "calibration_confidence", RiskInputError
    )
    merged = _merge_samples(samples)
    report_type = config.diagnosis_keys.report_type(key.report_type)
    infectiousness = config.diagnosis_keys.infectiousness(key.days_since_onset)

    windows: list[ExposureWindow] = []
    current: list[tuple[AttenuationSample, int]] = []

    def flush() -> None:
        if not current:
            return
        assumed = sum(1 for s, _ in current if s.assumed_tx_power)
        windows.append(
            ExposureWindow(
                day=current[0][0].window_start // DAY,
                scan_instances=tuple(
                    ScanInstance(_to_db(s.typical_attenuation), _to_db(s.min_attenuation), secs) for s, secs in current
                ),
                report_type=report_type,
                infectiousness=infectiousness,
                calibration_confidence=calibration_confidence,
                transmission_risk_level=key.transmission_risk_level,
                assumed_tx_power=config.default_tx_power if assumed else None,
                scan_instances_with_assumed_tx_power=assumed,
            )
        )
        current.clear()

    previous: int | None = None
    for sample in merged:
        start = sample.window_start
        if previous is None:
            seconds = config.scan_interval_seconds
        else:
            seconds = min(start - previous, config.scan_interval_seconds)
        if current:
            first = current[0][0].window_start
            if start // DAY != first // DAY or start - first >= config.max_window_seconds:
                flush()
        current.append((sample, seconds))
        previous = start
    flush()
    return tuple(windows)


def _merge_samples(samples: Iterable[AttenuationSample]) -> list[AttenuationSample]:
    by_start: dict[int, list[AttenuationSample]] = {}
    for sample in samples:
        if not isinstance(sample, AttenuationSample):
            raise RiskInputError(f"expected AttenuationSample values, got {type(sample).__name__}")
        by_start.setdefault(sample.window_start, []).append(sample)
    merged = []
    for start in sorted(by_start):
        group = by_start[start]
        if len(group) == 1:
            merged.append(group[0])
            continue
        count = sum(s.count for s in group)
        merged.append(
            AttenuationSample(
                window_start=start,
                typical_attenuation=sum(s.count * s.typical_attenuation for s in group) / count,
                min_attenuation=min(s.min_attenuation for s in group),
                count=count,
                assumed_tx_power=any(s.assumed_tx_power for s in group),
            )
        )
    return merged


def exposure_windows_from_sightings(
    windows: Sequence[SightingWindow],
    *,
    tx_power: int | Sequence[int | None] | None = None,
    receiver_correction: float = 0.0,
    key: KeyAttributes | None = None,
    calibration_confidence: CalibrationConfidence = CalibrationConfidence.LOWEST,
    config: WindowConfig | None = None,
) -> tuple[ExposureWindow, ...]:
    """Exposure windows of ONE matched key from the store's sighting windows of that key's IDs.

    ``tx_power``: the sender's TX power as the matcher decrypted it (one value, or one per window; None =
    unknown, then the window's plaintext TX power, then ``config.default_tx_power``).
    ``receiver_correction``: this receiver's RSSI correction in dB (added to the measured RSSI).
    ``calibration_confidence``: the sender's, from GAEN v1.1 metadata when known, else LOWEST.
    Only time counts: a window's ``count`` (callbacks) changes the mean RSSI, never the minutes. See
    :func:`exposure_windows_from_samples` for how time is attributed and windows are cut.
    """
    config = config or WindowConfig()
    samples = samples_from_sightings(
        windows,
        tx_power=tx_power,
        receiver_correction=receiver_correction,
        default_tx_power=config.default_tx_power,
    )
    return exposure_windows_from_samples(samples, key=key, calibration_confidence=calibration_confidence, config=config)


# --------------------------------------------------------------------------------------------------------
# Results


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
            "minutes": _round(self.minutes),
            "weight": self.weight,
            "weighted_minutes": _round(self.weighted_minutes),
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
            "score": _round(self.score),
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
            f"{_num(top.score)} on {top.date}."
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
                    "score": _round(d.score),
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
            threshold = "" if d.threshold is None else f" (threshold {_num(d.threshold)})"
            lines.append(
                f"{d.date}: {d.risk_level.name}, {a.score_name} {_num(d.score)}{threshold}; "
                f"{d.windows_counted} window(s) counted, {d.windows_ignored} ignored"
            )
            for b in d.buckets:
                lines.append(f"  {b.label}: {_num(b.minutes)} min x {_num(b.weight)} = {_num(b.weighted_minutes)}")
            lines.append(f"  Why: {d.reason}")
            lines.extend(f"  Note: {note}" for note in d.notes)
            lines.extend(f"  Window {i}: {w.reason}" for i, w in enumerate(d.windows, 1))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _round(value: float) -> float:
    return round(value, 4)


def _num(value: float) -> str:
    return f"{round(value, 2):g}"


class RiskModel(Protocol):
    """A scoring model: exposure windows in, an explainable per-day assessment out. Pure and immutable."""

    name: ClassVar[str]

    def describe(self) -> str: ...

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment: ...


def _dropped_by_gaen(window: ExposureWindow) -> str | None:
    """GAEN v2 yields no windows for these keys; windows built here may still carry them, so drop visibly."""
    if window.infectiousness == Infectiousness.NONE:
        return "dropped: the key's infectiousness on this day is NONE"
    if window.report_type == ReportType.REVOKED:
        return "dropped: the key was revoked"
    return None


def _by_day(windows: Iterable[ExposureWindow]) -> dict[int, list[ExposureWindow]]:
    days: dict[int, list[ExposureWindow]] = {}
    for window in windows:
        if not isinstance(window, ExposureWindow):
            raise RiskInputError(f"expected ExposureWindow values, got {type(window).__name__}")
        days.setdefault(window.day, []).append(window)
    return days


def _tx_notes(windows: Sequence[ExposureWindow]) -> tuple[str, ...]:
    notes = []
    for power in sorted({w.assumed_tx_power for w in windows if w.scan_instances_with_assumed_tx_power}):
        n = sum(w.scan_instances_with_assumed_tx_power for w in windows if w.assumed_tx_power == power)
        total = sum(len(w.scan_instances) for w in windows)
        notes.append(
            f"the sender's TX power was unknown for {n} of {total} scan instance(s); {power} dBm was assumed for them"
        )
    return tuple(notes)


def _check_keys(data: Mapping[str, Any], where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    allowed = set(allowed)
    if not isinstance(data, Mapping):
        raise RiskConfigError(f"{where}: expected a table, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise RiskConfigError(f"{where}.{key}: unknown setting (known: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in data:
            raise RiskConfigError(f"{where}.{key}: missing")


def _int_setting(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data[key]
    if not _is_int(value):
        raise RiskConfigError(f"{where}.{key}: expected a whole number, got {value!r}")
    return value


def _number_setting(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RiskConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------------
# SwissCovid


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
        if not thresholds or not all(_is_number(t) for t in thresholds):
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
        if not all(_is_number(w) and w >= 0 for w in weights):
            raise RiskConfigError(f"{where}.weights: must be non-negative numbers, got {list(weights)}")
        if not _is_number(self.notify_at_weighted_minutes) or self.notify_at_weighted_minutes <= 0:
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
        _check_keys(data, where, allowed)
        kwargs: dict[str, Any] = {}
        for key in ("attenuation_thresholds_db", "weights"):
            if key in data:
                value = data[key]
                if not isinstance(value, Sequence) or isinstance(value, str):
                    raise RiskConfigError(f"{where}.{key}: expected a list of numbers, got {value!r}")
                kwargs[key] = tuple(_number_setting(v, f"{where}.{key}[{i}]") for i, v in enumerate(value))
        if "notify_at_weighted_minutes" in data:
            kwargs["notify_at_weighted_minutes"] = _number_setting(
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
        t = [_num(x) for x in self.attenuation_thresholds_db]
        labels = [f"< {t[0]} dB"]
        labels.extend(f"{lo} to < {hi} dB" for lo, hi in pairwise(t))
        labels.append(f">= {t[-1]} dB")
        return tuple(labels)

    def describe(self) -> str:
        return (
            f"SwissCovid: {self.attenuation} attenuation, thresholds "
            f"{'/'.join(_num(t) for t in self.attenuation_thresholds_db)} dB, weights "
            f"{'/'.join(_num(w) for w in self.weights)}, minutes per bucket per day "
            f"{'rounded up' if self.round_minutes_up else 'exact'}, notify at >= "
            f"{_num(self.notify_at_weighted_minutes)} weighted minutes on a day"
        )

    def bucket_of(self, attenuation: int) -> int:
        return bisect_right(self.attenuation_thresholds_db, attenuation)

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment:
        labels = self.bucket_labels()
        days = []
        for day, day_windows in sorted(_by_day(windows).items()):
            seconds = [0] * len(labels)
            assessed = []
            for window in day_windows:
                window_seconds = [0] * len(labels)
                for si in window.scan_instances:
                    value = si.typical_attenuation if self.attenuation == "typical" else si.min_attenuation
                    window_seconds[self.bucket_of(value)] += si.counted_seconds
                dropped = _dropped_by_gaen(window)
                buckets = tuple(
                    BucketMinutes(label, s / 60, w)
                    for label, s, w in zip(labels, window_seconds, self.weights, strict=True)
                )
                if dropped is None:
                    seconds = [a + b for a, b in zip(seconds, window_seconds, strict=True)]
                assessed.append(
                    WindowAssessment(
                        counted=dropped is None,
                        reason=dropped
                        or "counted: " + ", ".join(f"{_num(b.minutes)} min at {b.label}" for b in buckets),
                        buckets=buckets,
                        score=0.0 if dropped else sum(b.weighted_minutes for b in buckets),
                        calibration_confidence=window.calibration_confidence,
                        transmission_risk_level=window.transmission_risk_level,
                        scan_instances=len(window.scan_instances),
                        scan_instances_with_assumed_tx_power=window.scan_instances_with_assumed_tx_power,
                        assumed_tx_power=window.assumed_tx_power,
                    )
                )
            minutes = [math.ceil(s / 60) if self.round_minutes_up else s / 60 for s in seconds]
            buckets = tuple(
                BucketMinutes(label, m, w) for label, m, w in zip(labels, minutes, self.weights, strict=True)
            )
            # Rounded so float noise in exact mode cannot decide a threshold (0.1 + 0.2 != 0.3).
            score = round(sum(b.weighted_minutes for b in buckets), 9)
            threshold = self.notify_at_weighted_minutes
            if score >= threshold:
                level = RiskLevel.HIGH
            elif score > 0:
                level = RiskLevel.LOW
            else:
                level = RiskLevel.NONE
            counted = [w for w in day_windows if _dropped_by_gaen(w) is None]
            days.append(
                DayAssessment(
                    day=day,
                    buckets=buckets,
                    score=score,
                    threshold=threshold,
                    risk_level=level,
                    reason=self._reason(buckets, score, threshold, len(counted), len(day_windows)),
                    windows=tuple(assessed),
                    notes=_tx_notes(counted),
                )
            )
        result = Assessment(self.name, self.describe(), "weighted minutes", tuple(days))
        _log.debug("swisscovid: %d day(s) assessed, notify=%s", len(days), result.notify)
        return result

    def _reason(
        self, buckets: Sequence[BucketMinutes], score: float, threshold: float, counted: int, total: int
    ) -> str:
        if counted == 0:
            return f"none of the {total} exposure window(s) counted, so the day has no weighted minutes."
        rounding = "rounded up to whole minutes, " if self.round_minutes_up else ""
        parts = " + ".join(f"{_num(b.minutes)} min at {b.label} x {_num(b.weight)}" for b in buckets)
        base = f"{parts} ({rounding}over {counted} window(s)) = {_num(score)} weighted minutes"
        if score >= threshold:
            return f"{base}, which reaches the threshold of {_num(threshold)}: notify."
        return f"{base}, {_num(threshold - score)} short of the threshold of {_num(threshold)}: no notification."


# --------------------------------------------------------------------------------------------------------
# Corona-Warn-App


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
        return f"{left}{_num(self.min)}, {_num(self.max)}{right}"

    @classmethod
    def from_dict(cls, data: object, where: str) -> Range:
        """CWA's JSON shape: min (default 0), max (required), minExclusive, maxExclusive (default false)."""
        if not isinstance(data, Mapping):
            raise RiskConfigError(f"{where}: expected a table with min/max, got {data!r}")
        _check_keys(data, where, {"min", "max", "minExclusive", "maxExclusive"}, {"max"})
        low = _number_setting(data.get("min", 0), f"{where}.min")
        high = _number_setting(data["max"], f"{where}.max")
        flags = {}
        for key in ("minExclusive", "maxExclusive"):
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise RiskConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            flags[key] = value
        if high < low:
            raise RiskConfigError(f"{where}: max {_num(high)} is below min {_num(low)}")
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
        _check_keys(data, where, set(cls._JSON_KEYS), set(cls._JSON_KEYS))
        return cls(**{attr: _int_setting(data, key, where) for key, attr in cls._JSON_KEYS.items()})

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
        _check_keys(
            data,
            where,
            set(cls._KNOWN_KEYS),
            {
                "minutesAtAttenuationWeights",
                "normalizedTimePerEWToRiskLevelMapping",
                "normalizedTimePerDayToRiskLevelMapping",
            },
        )

        def items(key: str) -> list[tuple[str, Mapping[str, Any]]]:
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

        filters = []
        for w, item in items("minutesAtAttenuationFilters"):
            _check_keys(
                item,
                w,
                {"attenuationRange", "dropIfMinutesInRange"},
                {"attenuationRange", "dropIfMinutesInRange"},
            )
            filters.append(
                MinutesAtAttenuationFilter(
                    Range.from_dict(item["attenuationRange"], f"{w}.attenuationRange"),
                    Range.from_dict(item["dropIfMinutesInRange"], f"{w}.dropIfMinutesInRange"),
                )
            )
        trl_filters = []
        for w, item in items("trlFilters"):
            _check_keys(item, w, {"dropIfTrlInRange"}, {"dropIfTrlInRange"})
            trl_filters.append(Range.from_dict(item["dropIfTrlInRange"], f"{w}.dropIfTrlInRange"))
        weights = []
        for w, item in items("minutesAtAttenuationWeights"):
            _check_keys(item, w, {"attenuationRange", "weight"}, {"attenuationRange", "weight"})
            weight = _number_setting(item["weight"], f"{w}.weight")
            if weight < 0:
                raise RiskConfigError(f"{w}.weight: must not be negative, got {_num(weight)}")
            weights.append(
                AttenuationWeight(Range.from_dict(item["attenuationRange"], f"{w}.attenuationRange"), weight)
            )

        def mappings(key: str) -> tuple[RiskLevelMapping, ...]:
            out = []
            for w, item in items(key):
                _check_keys(item, w, {"normalizedTimeRange", "riskLevel"}, {"normalizedTimeRange", "riskLevel"})
                level = _enum(RiskLevel, item["riskLevel"], f"{w}.riskLevel")
                if level == RiskLevel.NONE:
                    raise RiskConfigError(f"{w}.riskLevel: must be LOW (1) or HIGH (2)")
                out.append(
                    RiskLevelMapping(Range.from_dict(item["normalizedTimeRange"], f"{w}.normalizedTimeRange"), level)
                )
            if not out:
                raise RiskConfigError(f"{where}.{key}: must list at least one range")
            return tuple(out)

        if "trlEncoding" in data and "transmissionRiskLevelEncoding" in data:
            raise RiskConfigError(f"{where}.transmissionRiskLevelEncoding: give it or trlEncoding, not both")
        encoding_key = "trlEncoding" if "trlEncoding" in data else "transmissionRiskLevelEncoding"
        if encoding_key not in data:
            raise RiskConfigError(f"{where}.trlEncoding: missing")
        encoding = TrlEncoding.from_dict(data[encoding_key], f"{where}.{encoding_key}")

        values: dict[int, float] | None = None
        multiplier: float | None = None
        if "transmissionRiskValueMapping" in data and "transmissionRiskLevelMultiplier" in data:
            raise RiskConfigError(
                f"{where}.transmissionRiskLevelMultiplier: give it or transmissionRiskValueMapping, not both"
            )
        if "transmissionRiskValueMapping" in data:
            values = {}
            for w, item in items("transmissionRiskValueMapping"):
                _check_keys(
                    item,
                    w,
                    {"transmissionRiskLevel", "transmissionRiskValue"},
                    {"transmissionRiskLevel", "transmissionRiskValue"},
                )
                trl = _int_setting(item, "transmissionRiskLevel", w)
                if trl in values:
                    raise RiskConfigError(f"{w}.transmissionRiskLevel: {trl} is listed twice")
                value = _number_setting(item["transmissionRiskValue"], f"{w}.transmissionRiskValue")
                if value < 0:
                    raise RiskConfigError(f"{w}.transmissionRiskValue: must not be negative, got {_num(value)}")
                values[trl] = value
        elif "transmissionRiskLevelMultiplier" in data:
            multiplier = _number_setting(
                data["transmissionRiskLevelMultiplier"], f"{where}.transmissionRiskLevelMultiplier"
            )
            if multiplier < 0:
                raise RiskConfigError(f"{where}.transmissionRiskLevelMultiplier: must not be negative")
        else:
            raise RiskConfigError(
                f"{where}.transmissionRiskValueMapping: missing (or give transmissionRiskLevelMultiplier)"
            )

        return cls(
            minutes_at_attenuation_weights=tuple(weights),
            normalized_time_per_window_to_risk_level=mappings("normalizedTimePerEWToRiskLevelMapping"),
            normalized_time_per_day_to_risk_level=mappings("normalizedTimePerDayToRiskLevelMapping"),
            trl_encoding=encoding,
            transmission_risk_values=values,
            transmission_risk_level_multiplier=multiplier,
            minutes_at_attenuation_filters=tuple(filters),
            trl_filters=tuple(trl_filters),
        )

    def describe(self) -> str:
        weights = ", ".join(f"{w.range} dB x {_num(w.weight)}" for w in self.minutes_at_attenuation_weights)
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
        dropped = _dropped_by_gaen(window)
        if dropped is None:
            for f in self.minutes_at_attenuation_filters:
                at = sum(si.counted_seconds for si in window.scan_instances if si.min_attenuation in f.attenuation)
                if at // 60 in f.drop_if_minutes:
                    dropped = (
                        f"dropped: {at // 60} whole minute(s) at {f.attenuation} dB is in the drop range "
                        f"{f.drop_if_minutes} of a minutesAtAttenuationFilter"
                    )
                    break
        if dropped is not None:
            return WindowAssessment(counted=False, reason=dropped, score=0.0, **common)

        if window.transmission_risk_level is not None:
            trl, source = window.transmission_risk_level, "from the key"
        else:
            encoded = self.trl_encoding.encode(window.report_type, window.infectiousness)
            if encoded is None:
                return WindowAssessment(
                    counted=False,
                    reason=(
                        f"dropped: report type {window.report_type.name} has no TRL encoding and the key gave no TRL"
                    ),
                    score=0.0,
                    **common,
                )
            trl = encoded
            source = f"report type {window.report_type.name} + infectiousness {window.infectiousness.name}"
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
        level = next(
            (m.risk_level for m in self.normalized_time_per_window_to_risk_level if normalized in m.range),
            None,
        )
        if level is None:
            raise RiskConfigError(
                f"risk.cwa.normalizedTimePerEWToRiskLevelMapping: no range covers a window's normalized time "
                f"{_num(normalized)}; the ranges must cover every value from 0 up"
            )
        return WindowAssessment(
            counted=True,
            reason=(
                f"TRL {trl} ({source}) -> transmission risk value {_num(value)} x {_num(weighted)} "
                f"weighted minutes = normalized time {_num(normalized)} -> {level.name}"
            ),
            score=normalized,
            risk_level=level,
            transmission_risk_level=trl,
            transmission_risk_value=value,
            **common,
        )

    def assess(self, windows: Iterable[ExposureWindow]) -> Assessment:
        days = []
        threshold = self.high_risk_threshold
        for day, day_windows in sorted(_by_day(windows).items()):
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
                    notes=_tx_notes([w for w, a in zip(day_windows, assessed, strict=True) if a.counted]),
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
        base = f"the normalized times of {counted} window(s) add up to {_num(normalized)} (rounded to one decimal)"
        if mapping is None:
            lowest = min(m.range.min for m in self.normalized_time_per_day_to_risk_level)
            return f"{base}, which no per-day range covers (the lowest starts at {_num(lowest)}): no risk."
        crossed = mapping.risk_level == RiskLevel.HIGH
        if crossed:
            tail = "notify."
        elif threshold is None:
            tail = "no per-day range maps to HIGH: no notification."
        else:
            tail = f"below the high-risk threshold of {_num(threshold)}: no notification."
        return f"{base}, in {mapping.range} -> {mapping.risk_level.name}; {tail}"


def _round_half_up_1(value: float) -> float:
    """One decimal, half up, as CWA rounds a day's normalized time (3 x 1.2 must not end up as 3.5999)."""
    return math.floor(value * 10 + 0.5) / 10


# --------------------------------------------------------------------------------------------------------
# Settings and entry points


@dataclass(frozen=True)
class RiskSettings:
    """The ``[risk]`` table of the daemon's config: which model, its parameters and the window building."""

    model: RiskModel = field(default_factory=SwissCovidModel)
    windows: WindowConfig = field(default_factory=WindowConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk") -> RiskSettings:
        """Keys: model ("swisscovid" default | "cwa"), swisscovid (table), cwa (table, CWA's JSON shape),
        exposure_windows (table, see :meth:`WindowConfig.from_dict`)."""
        _check_keys(data, where, {"model", "swisscovid", "cwa", "exposure_windows"})
        kind = data.get("model", SwissCovidModel.name)
        model: RiskModel
        if kind == SwissCovidModel.name:
            model = SwissCovidModel.from_dict(data.get("swisscovid", {}), f"{where}.swisscovid")
        elif kind == CwaModel.name:
            if "cwa" not in data:
                raise RiskConfigError(f"{where}.cwa: missing (model = 'cwa' needs the CWA risk configuration)")
            model = CwaModel.from_dict(data["cwa"], f"{where}.cwa")
        else:
            raise RiskConfigError(f"{where}.model: {kind!r} is not a risk model; use 'swisscovid' or 'cwa'")
        windows = WindowConfig.from_dict(data.get("exposure_windows", {}), f"{where}.exposure_windows")
        return cls(model=model, windows=windows)


def assess(windows: Iterable[ExposureWindow], model: RiskModel | None = None) -> Assessment:
    """Score exposure windows with ``model`` (SwissCovid defaults when None)."""
    return (model or SwissCovidModel()).assess(windows)


def explain(assessment: Assessment) -> Explanation:
    return assessment.explain()

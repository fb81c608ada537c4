"""Exposure windows: how one matched key's sightings become what the risk models score.

Sightings (the store's per-minute RSSI aggregates) → :class:`AttenuationSample` (attenuation in dB per
scan window) → GAEN-v2-like :class:`ExposureWindow` values (at most 30 min, one UTC day, one key) made of
:class:`ScanInstance` values (typical and minimum attenuation, seconds since the last scan).

Attenuation is ``TX power - (RSSI + receiver correction)``: what the radio path swallowed, which is what
distance shows up as once both phones' hardware differences are calibrated out.

Privacy: IDs only pass through :func:`samples_from_sightings`, which reads the times and signal strengths of
a window and drops the rest, so no window built here can reveal an ID.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.clock import DAY, day_to_iso
from agent.risk.vocabulary import (
    MAX_ATTENUATION_DB,
    CalibrationConfidence,
    Infectiousness,
    RiskConfigError,
    RiskInputError,
    as_enum,
    check_keys,
    check_trl,
    int_setting,
    is_int,
    is_number,
)
from agent.schemes.published import ReportType
from agent.sightings import SCAN_WINDOW_SECONDS, SightingWindow

DEFAULT_MAX_WINDOW_SECONDS = 30 * 60  # GAEN v2 cuts exposure windows at 30 minutes


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
            if not is_int(value) or not 0 <= value <= MAX_ATTENUATION_DB:
                raise RiskInputError(
                    f"ScanInstance.{name} must be an integer dB value in 0..{MAX_ATTENUATION_DB}, got {value!r}"
                )
        if not is_int(self.seconds_since_last_scan):
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
        if not is_int(self.day) or self.day < 0:
            raise RiskInputError(f"ExposureWindow.day must be a non-negative unix day number, got {self.day!r}")
        instances = tuple(self.scan_instances)
        for si in instances:
            if not isinstance(si, ScanInstance):
                raise RiskInputError(f"ExposureWindow.scan_instances must hold ScanInstance values, got {si!r}")
        object.__setattr__(self, "scan_instances", instances)
        object.__setattr__(
            self,
            "report_type",
            as_enum(ReportType, self.report_type, "ExposureWindow.report_type", RiskInputError),
        )
        object.__setattr__(
            self,
            "infectiousness",
            as_enum(Infectiousness, self.infectiousness, "ExposureWindow.infectiousness", RiskInputError),
        )
        object.__setattr__(
            self,
            "calibration_confidence",
            as_enum(
                CalibrationConfidence,
                self.calibration_confidence,
                "ExposureWindow.calibration_confidence",
                RiskInputError,
            ),
        )
        check_trl(self.transmission_risk_level, "ExposureWindow.transmission_risk_level")
        assumed = self.scan_instances_with_assumed_tx_power
        if not is_int(assumed) or not 0 <= assumed <= len(instances):
            raise RiskInputError(
                "ExposureWindow.scan_instances_with_assumed_tx_power must be between 0 and the number of "
                f"scan instances ({len(instances)}), got {assumed!r}"
            )
        if assumed and self.assumed_tx_power is None:
            raise RiskInputError("ExposureWindow.assumed_tx_power must be set when some TX power was assumed")

    @property
    def date(self) -> str:
        return day_to_iso(self.day)


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
        check_trl(self.transmission_risk_level, "KeyAttributes.transmission_risk_level")
        if self.report_type is not None:
            object.__setattr__(
                self,
                "report_type",
                as_enum(ReportType, self.report_type, "KeyAttributes.report_type", RiskInputError),
            )
        if self.days_since_onset is not None and not is_int(self.days_since_onset):
            raise RiskInputError(
                f"KeyAttributes.days_since_onset must be an integer or None, got {self.days_since_onset!r}"
            )


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
            if not is_int(day):
                raise RiskConfigError(f"{where}.days_since_onset_to_infectiousness: key {day!r} is not an integer")
            table[day] = as_enum(Infectiousness, value, f"{where}.days_since_onset_to_infectiousness[{day}]")
        object.__setattr__(self, "days_since_onset_to_infectiousness", MappingProxyType(table))
        for name, cls in (
            ("infectiousness_for_unlisted_days", Infectiousness),
            ("infectiousness_when_onset_missing", Infectiousness),
            ("report_type_when_missing", ReportType),
        ):
            object.__setattr__(self, name, as_enum(cls, getattr(self, name), f"{where}.{name}"))
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
        check_keys(
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
            table[day] = as_enum(Infectiousness, value, f"{table_where}.{key}")
        kwargs: dict[str, Any] = {"days_since_onset_to_infectiousness": table}
        for name, enum_cls in (
            ("infectiousness_for_unlisted_days", Infectiousness),
            ("infectiousness_when_onset_missing", Infectiousness),
            ("report_type_when_missing", ReportType),
        ):
            if name in data:
                kwargs[name] = as_enum(enum_cls, data[name], f"{where}.{name}")
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
        if not is_int(self.scan_interval_seconds) or self.scan_interval_seconds < SCAN_WINDOW_SECONDS:
            raise RiskConfigError(
                f"{where}.scan_interval_seconds must be a whole number >= {SCAN_WINDOW_SECONDS} "
                f"(the sighting window length), got {self.scan_interval_seconds!r}"
            )
        if (
            not is_int(self.max_window_seconds)
            or self.max_window_seconds < SCAN_WINDOW_SECONDS
            or self.max_window_seconds > DAY
        ):
            raise RiskConfigError(
                f"{where}.max_window_seconds must be between {SCAN_WINDOW_SECONDS} and {DAY}, "
                f"got {self.max_window_seconds!r}"
            )
        if not is_int(self.default_tx_power) or not -127 <= self.default_tx_power <= 127:
            raise RiskConfigError(f"{where}.default_tx_power must be an int8 dBm value, got {self.default_tx_power!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk.exposure_windows") -> WindowConfig:
        """Keys: scan_interval_seconds, max_window_minutes, default_tx_power_dbm, diagnosis_keys (table)."""
        check_keys(
            data,
            where,
            {"scan_interval_seconds", "max_window_minutes", "default_tx_power_dbm", "diagnosis_keys"},
        )
        kwargs: dict[str, Any] = {}
        if "scan_interval_seconds" in data:
            value = int_setting(data, "scan_interval_seconds", where)
            if value < SCAN_WINDOW_SECONDS:
                raise RiskConfigError(
                    f"{where}.scan_interval_seconds: must be >= {SCAN_WINDOW_SECONDS} (the sighting window "
                    f"length), got {value}"
                )
            kwargs["scan_interval_seconds"] = value
        if "max_window_minutes" in data:
            value = int_setting(data, "max_window_minutes", where)
            if not 1 <= value <= DAY // 60:
                raise RiskConfigError(f"{where}.max_window_minutes: must be 1..1440, got {value}")
            kwargs["max_window_seconds"] = value * 60
        if "default_tx_power_dbm" in data:
            value = int_setting(data, "default_tx_power_dbm", where)
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
        if not is_int(self.window_start) or self.window_start < 0:
            raise RiskInputError(
                f"AttenuationSample.window_start must be non-negative unix seconds, got {self.window_start!r}"
            )
        for name in ("typical_attenuation", "min_attenuation"):
            if not is_number(getattr(self, name)):
                raise RiskInputError(f"AttenuationSample.{name} must be a finite number, got {getattr(self, name)!r}")
        if not is_int(self.count) or self.count < 1:
            raise RiskInputError(f"AttenuationSample.count must be a positive integer, got {self.count!r}")


def attenuation_db(tx_power: float, rssi: float, receiver_correction: float) -> float:
    """Attenuation = TX power - (RSSI + receiver correction)."""
    return tx_power - (rssi + receiver_correction)


def attenuation_to_db(value: float) -> int:
    """Whole dB as exposure windows and EBID reports carry them alike: half-up rounding into the 0..255
    range GAEN reports; a negative attenuation (uncalibrated sender louder than its stated power) means
    'as close as it gets', so it clamps to 0 rather than failing."""
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
    if not is_number(receiver_correction):
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
        elif not is_int(resolved) or not -127 <= resolved <= 127:
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
    if not is_int(window.window_start) or window.window_start < 0:
        raise RiskInputError(f"{where}: window_start must be non-negative unix seconds")
    if not is_int(window.count) or window.count < 1:
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
    calibration_confidence = as_enum(
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
                    ScanInstance(attenuation_to_db(s.typical_attenuation), attenuation_to_db(s.min_attenuation), secs)
                    for s, secs in current
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

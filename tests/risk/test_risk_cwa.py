"""The Corona-Warn-App model against CWA's own 29 exposure-window cases, plus its configuration handling."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent.risk import (
    CalibrationConfidence,
    CwaModel,
    ExposureWindow,
    Infectiousness,
    ReportType,
    RiskConfigError,
    RiskLevel,
    ScanInstance,
)

TODAY = 20_000
# Read at import time because the cases parametrize the test; the file is a verbatim copy of the vector.
CASES = json.loads((Path(__file__).resolve().parent.parent / "data" / "cwa_risk_cases.json").read_text())["expected"][
    "testCases"
]


def windows_of(case: dict[str, Any]) -> list[ExposureWindow]:
    return [
        ExposureWindow(
            day=TODAY - w["ageInDays"],
            scan_instances=tuple(
                ScanInstance(s["typicalAttenuation"], s["minAttenuation"], s["secondsSinceLastScan"])
                for s in w["scanInstances"]
            ),
            report_type=ReportType(w["reportType"]),
            infectiousness=Infectiousness(w["infectiousness"]),
            calibration_confidence=CalibrationConfidence(w["calibrationConfidence"]),
        )
        for w in case["exposureWindows"]
    ]


def age(day: int | None) -> int | None:
    return None if day is None else TODAY - day


def test_all_29_cases_are_present() -> None:
    assert len(CASES) == 29


@pytest.mark.parametrize("case", CASES, ids=[c["description"][:80] for c in CASES])
def test_cwa_case(case: dict[str, Any], cwa_config: dict[str, Any]) -> None:
    result = CwaModel.from_dict(cwa_config).assess(windows_of(case))
    assert int(result.risk_level) == case["expTotalRiskLevel"]
    assert age(result.most_recent_day_with_low_risk) == case["expAgeOfMostRecentDateWithLowRisk"]
    assert age(result.most_recent_day_with_high_risk) == case["expAgeOfMostRecentDateWithHighRisk"]
    assert result.days_with_low_risk == case["expNumberOfDaysWithLowRisk"]
    assert result.days_with_high_risk == case["expNumberOfDaysWithHighRisk"]
    assert result.distinct_encounters_with_low_risk == case["expTotalMinimumDistinctEncountersWithLowRisk"]
    assert result.distinct_encounters_with_high_risk == case["expTotalMinimumDistinctEncountersWithHighRisk"]
    assert result.notify == (case["expTotalRiskLevel"] == RiskLevel.HIGH)


@pytest.mark.parametrize(("seconds", "score", "level"), [(537, 9.0, RiskLevel.HIGH), (536, 8.9, RiskLevel.LOW)])
def test_day_sum_is_rounded_half_up_to_one_decimal_before_mapping(
    cwa_config: dict[str, Any], seconds: int, score: float, level: RiskLevel
) -> None:
    """8.95 normalized minutes round to 9.0 and reach HIGH; 8.93 round to 8.9 and stay LOW."""
    w = ExposureWindow(TODAY, (ScanInstance(65, 65, seconds),), transmission_risk_level=5)  # value 1.0, weight 1
    (day,) = CwaModel.from_dict(cwa_config).assess([w]).days
    assert day.windows[0].score == pytest.approx(seconds / 60)
    assert day.score == score
    assert day.risk_level == level


def window(
    minutes: int,
    min_att: int = 65,
    *,
    trl: int | None = None,
    report_type: ReportType = ReportType.CONFIRMED_TEST,
) -> ExposureWindow:
    return ExposureWindow(
        day=TODAY,
        scan_instances=tuple(ScanInstance(min_att, min_att, 60) for _ in range(minutes)),
        report_type=report_type,
        infectiousness=Infectiousness.STANDARD,
        transmission_risk_level=trl,
    )


def test_key_trl_is_used_instead_of_the_encoding(cwa_config: dict[str, Any]) -> None:
    model = CwaModel.from_dict(cwa_config)
    # Encoded TRL would be 6 + 1 = 7 (value 1.4); the key says TRL 3 (value 0.6).
    (w,) = model.assess([window(10, trl=3)]).days[0].windows
    assert w.transmission_risk_level == 3
    assert w.transmission_risk_value == 0.6
    assert w.score == pytest.approx(6.0)
    assert "from the key" in w.reason
    (w,) = model.assess([window(10)]).days[0].windows
    assert w.transmission_risk_level == 7
    assert w.score == pytest.approx(14.0)


def test_unknown_report_type_without_trl_is_dropped_visibly(cwa_config: dict[str, Any]) -> None:
    result = CwaModel.from_dict(cwa_config).assess([window(30, report_type=ReportType.UNKNOWN)])
    (day,) = result.days
    assert day.risk_level == RiskLevel.NONE
    assert day.windows_ignored == 1
    assert "UNKNOWN" in day.windows[0].reason


def test_revoked_and_non_infectious_windows_are_dropped(cwa_config: dict[str, Any]) -> None:
    model = CwaModel.from_dict(cwa_config)
    revoked = window(30, report_type=ReportType.REVOKED)
    none = ExposureWindow(TODAY, window(30).scan_instances, infectiousness=Infectiousness.NONE)
    result = model.assess([revoked, none])
    assert not result.notify
    assert [w.counted for w in result.days[0].windows] == [False, False]
    assert "revoked" in result.days[0].windows[0].reason
    assert "NONE" in result.days[0].windows[1].reason


def test_minutes_at_attenuation_filter_drops_short_windows(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    config["minutesAtAttenuationFilters"] = [
        {
            "attenuationRange": {"min": 0, "max": 73, "maxExclusive": True},
            "dropIfMinutesInRange": {"min": 0, "max": 10, "maxExclusive": True},
        }
    ]
    model = CwaModel.from_dict(config)
    short = model.assess([window(9)])
    assert short.days[0].windows_ignored == 1
    assert "minutesAtAttenuationFilter" in short.days[0].windows[0].reason
    kept = model.assess([window(10)])
    assert kept.days[0].windows_counted == 1
    assert kept.notify  # 10 min x 1.0 x 1.4 = 14


def test_trl_filter_drops_windows(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    config["trlFilters"] = [{"dropIfTrlInRange": {"min": 1, "max": 3}}]
    model = CwaModel.from_dict(config)
    result = model.assess([window(30, trl=3), window(30, trl=4)])
    assert [w.counted for w in result.days[0].windows] == [False, True]
    assert "trlFilter" in result.days[0].windows[0].reason


def test_multiplier_instead_of_value_mapping(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    del config["transmissionRiskValueMapping"]
    config["transmissionRiskLevelMultiplier"] = 0.2
    model = CwaModel.from_dict(config)
    (w,) = model.assess([window(10, trl=5)]).days[0].windows
    assert w.transmission_risk_value == pytest.approx(1.0)
    assert w.score == pytest.approx(10.0)


def test_unlisted_trl_has_value_zero(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    config["transmissionRiskValueMapping"] = [{"transmissionRiskLevel": 5, "transmissionRiskValue": 1}]
    result = CwaModel.from_dict(config).assess([window(60, trl=6)])
    assert result.days[0].windows[0].transmission_risk_value == 0
    assert result.days[0].risk_level == RiskLevel.NONE


def test_gap_in_per_window_mapping_is_a_config_error(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    config["normalizedTimePerEWToRiskLevelMapping"] = [
        {"normalizedTimeRange": {"min": 0, "max": 9, "maxExclusive": True}, "riskLevel": 1}
    ]
    with pytest.raises(RiskConfigError, match="normalizedTimePerEWToRiskLevelMapping"):
        CwaModel.from_dict(config).assess([window(30)])


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda c: c.pop("minutesAtAttenuationWeights"), r"risk\.cwa\.minutesAtAttenuationWeights: missing"),
        (
            lambda c: c.update(minutesAtAttenuationWeight=[]),
            r"risk\.cwa\.minutesAtAttenuationWeight: unknown",
        ),
        (
            lambda c: c["minutesAtAttenuationWeights"][1]["attenuationRange"].pop("max"),
            r"risk\.cwa\.minutesAtAttenuationWeights\[1\]\.attenuationRange\.max: missing",
        ),
        (
            lambda c: c["minutesAtAttenuationWeights"][0].update(weight="heavy"),
            r"risk\.cwa\.minutesAtAttenuationWeights\[0\]\.weight",
        ),
        (
            lambda c: c["normalizedTimePerDayToRiskLevelMapping"][0].update(riskLevel=7),
            r"risk\.cwa\.normalizedTimePerDayToRiskLevelMapping\[0\]\.riskLevel",
        ),
        (
            lambda c: c["normalizedTimePerEWToRiskLevelMapping"][0]["normalizedTimeRange"].update(max=-1),
            r"risk\.cwa\.normalizedTimePerEWToRiskLevelMapping\[0\]\.normalizedTimeRange: "
            r"max -1 is below min 0",
        ),
        (
            lambda c: c["trlEncoding"].pop("infectiousnessOffsetHigh"),
            r"risk\.cwa\.trlEncoding\.infectiousnessOffsetHigh",
        ),
        (lambda c: c.pop("trlEncoding"), r"risk\.cwa\.trlEncoding: missing"),
        (
            lambda c: c.pop("transmissionRiskValueMapping"),
            r"risk\.cwa\.transmissionRiskValueMapping: missing",
        ),
        (
            lambda c: c.update(transmissionRiskLevelMultiplier=0.2),
            r"risk\.cwa\.transmissionRiskLevelMultiplier: give it or transmissionRiskValueMapping",
        ),
        (
            lambda c: c["transmissionRiskValueMapping"].append(
                {"transmissionRiskLevel": 3, "transmissionRiskValue": 2}
            ),
            r"risk\.cwa\.transmissionRiskValueMapping\[8\]\.transmissionRiskLevel: 3 is listed twice",
        ),
        (
            lambda c: c["minutesAtAttenuationWeights"][0]["attenuationRange"].update(maxExclusive="yes"),
            r"risk\.cwa\.minutesAtAttenuationWeights\[0\]\.attenuationRange\.maxExclusive",
        ),
        (lambda c: c.update(normalizedTimePerDayToRiskLevelMapping=[]), r"must list at least one range"),
    ],
)
def test_bad_config_names_the_key(cwa_config: dict[str, Any], mutate: Any, path: str) -> None:
    config = copy.deepcopy(cwa_config)
    mutate(config)
    with pytest.raises(RiskConfigError, match=path):
        CwaModel.from_dict(config)


def test_config_accepts_risk_level_names_and_long_encoding_key(cwa_config: dict[str, Any]) -> None:
    config = copy.deepcopy(cwa_config)
    config["transmissionRiskLevelEncoding"] = config.pop("trlEncoding")
    for mapping in config["normalizedTimePerDayToRiskLevelMapping"]:
        mapping["riskLevel"] = RiskLevel(mapping["riskLevel"]).name.lower()
    assert CwaModel.from_dict(config) == CwaModel.from_dict(cwa_config)


def test_high_risk_threshold_is_the_lowest_high_range(cwa_config: dict[str, Any]) -> None:
    assert CwaModel.from_dict(cwa_config).high_risk_threshold == 9

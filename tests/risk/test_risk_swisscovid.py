"""The default SwissCovid model: bucket boundaries, the per-day threshold, rounding and dropped windows."""

from __future__ import annotations

import pytest

from agent.risk import (
    ExposureWindow,
    Infectiousness,
    ReportType,
    RiskConfigError,
    RiskLevel,
    ScanInstance,
    SwissCovidModel,
    assess,
)

DAY = 19_783


def minutes_at(attenuation: int, minutes: int, *, day: int = DAY, min_attenuation: int | None = None) -> ExposureWindow:
    low = attenuation if min_attenuation is None else min_attenuation
    return ExposureWindow(day, tuple(ScanInstance(attenuation, low, 60) for _ in range(minutes)))


def test_defaults_are_swisscovid() -> None:
    model = SwissCovidModel()
    assert model.attenuation_thresholds_db == (55, 63)
    assert model.weights == (1.0, 0.5, 0.0)
    assert model.notify_at_weighted_minutes == 15
    assert assess([minutes_at(50, 15)]).model == "swisscovid"


@pytest.mark.parametrize(
    ("attenuation", "bucket"),
    [(0, 0), (54, 0), (55, 1), (62, 1), (63, 2), (255, 2)],
)
def test_threshold_value_belongs_to_the_bucket_above(attenuation: int, bucket: int) -> None:
    """Bucket i holds thresholds[i-1] <= a < thresholds[i]: exactly 55 dB is medium, exactly 63 dB is far."""
    (day,) = SwissCovidModel().assess([minutes_at(attenuation, 10)]).days
    assert [b.minutes for b in day.buckets] == [10 if i == bucket else 0 for i in range(3)]


@pytest.mark.parametrize(
    ("attenuation", "expected_score", "notify"),
    [(54, 15.0, True), (55, 7.5, False), (62, 7.5, False), (63, 0.0, False)],
)
def test_fifteen_minutes_at_each_boundary(attenuation: int, expected_score: float, notify: bool) -> None:
    result = SwissCovidModel().assess([minutes_at(attenuation, 15)])
    assert result.days[0].score == expected_score
    assert result.notify is notify


@pytest.mark.parametrize(
    ("near", "medium", "level"),
    [
        (15, 0, RiskLevel.HIGH),  # exactly 15: the threshold is inclusive
        (14, 1, RiskLevel.LOW),  # 14.5
        (14, 2, RiskLevel.HIGH),  # 15.0 from two buckets
        (0, 30, RiskLevel.HIGH),  # 15.0 from medium alone
        (0, 29, RiskLevel.LOW),  # 14.5
        (0, 0, RiskLevel.NONE),
    ],
)
def test_per_day_threshold_at_exactly_fifteen(near: int, medium: int, level: RiskLevel) -> None:
    windows = [minutes_at(40, near), minutes_at(60, medium), minutes_at(70, 20)]
    (day,) = SwissCovidModel().assess(windows).days
    assert day.score == near + medium / 2
    assert day.risk_level == level
    assert day.crossed is (level == RiskLevel.HIGH)
    assert day.threshold == 15


def test_days_are_scored_separately() -> None:
    split = SwissCovidModel().assess([minutes_at(40, 10, day=DAY), minutes_at(40, 10, day=DAY + 1)])
    assert [d.score for d in split.days] == [10, 10]
    assert not split.notify
    same_day = SwissCovidModel().assess([minutes_at(40, 10), minutes_at(40, 5)])
    assert same_day.notify
    assert same_day.days_with_high_risk == 1
    assert same_day.most_recent_day_with_high_risk == DAY


def test_seconds_are_rounded_up_per_bucket_per_day_like_swisscovid() -> None:
    window = ExposureWindow(DAY, (ScanInstance(40, 40, 14 * 60 + 1),))
    assert SwissCovidModel().assess([window]).days[0].score == 15
    exact = SwissCovidModel(round_minutes_up=False).assess([window]).days[0]
    assert exact.score == pytest.approx(14 + 1 / 60)
    assert exact.risk_level == RiskLevel.LOW


def test_zero_and_negative_seconds_count_as_zero() -> None:
    window = ExposureWindow(DAY, (ScanInstance(40, 40, 0), ScanInstance(40, 40, -86_000), ScanInstance(40, 40, 600)))
    (day,) = SwissCovidModel().assess([window]).days
    assert day.buckets[0].minutes == 10


def test_typical_attenuation_by_default_minimum_on_request() -> None:
    window = minutes_at(70, 20, min_attenuation=50)
    assert SwissCovidModel().assess([window]).days[0].score == 0
    assert SwissCovidModel(attenuation="minimum").assess([window]).days[0].score == 20


def test_key_attributes_do_not_matter_but_gaen_drops_do() -> None:
    scans = minutes_at(40, 20).scan_instances
    self_report = ExposureWindow(DAY, scans, report_type=ReportType.SELF_REPORT, transmission_risk_level=1)
    assert SwissCovidModel().assess([self_report]).notify
    not_infectious = ExposureWindow(DAY, scans, infectiousness=Infectiousness.NONE)
    revoked = ExposureWindow(DAY, scans, report_type=ReportType.REVOKED)
    result = SwissCovidModel().assess([not_infectious, revoked])
    (day,) = result.days
    assert not result.notify
    assert day.risk_level == RiskLevel.NONE
    assert day.windows_ignored == 2
    assert all(b.minutes == 0 for b in day.buckets)
    assert "none of the 2 exposure window(s) counted" in day.reason


def test_custom_thresholds_and_weights() -> None:
    model = SwissCovidModel(
        attenuation_thresholds_db=(50, 60, 70), weights=(2, 1, 0.5, 0), notify_at_weighted_minutes=10
    )
    (day,) = model.assess([minutes_at(45, 2), minutes_at(55, 3), minutes_at(65, 4), minutes_at(75, 100)]).days
    assert [b.minutes for b in day.buckets] == [2, 3, 4, 100]
    assert day.score == 2 * 2 + 3 + 4 * 0.5
    assert day.risk_level == RiskLevel.LOW
    assert model.bucket_labels() == ("< 50 dB", "50 to < 60 dB", "60 to < 70 dB", ">= 70 dB")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attenuation_thresholds_db": (63, 55)}, "attenuation_thresholds_db: must increase"),
        ({"weights": (1.0, 0.5)}, "weights: 2 threshold"),
        ({"weights": (1.0, -0.5, 0)}, "weights: must be non-negative"),
        ({"notify_at_weighted_minutes": 0}, "notify_at_weighted_minutes"),
        ({"attenuation": "mean"}, "attenuation: must be 'typical' or 'minimum'"),
        ({"round_minutes_up": "yes"}, "round_minutes_up"),
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RiskConfigError, match=message):
        SwissCovidModel(**kwargs)  # type: ignore[arg-type]


def test_from_dict_names_the_bad_key() -> None:
    assert SwissCovidModel.from_dict({}) == SwissCovidModel()
    assert SwissCovidModel.from_dict({"weights": [1, 0.25, 0]}).weights == (1.0, 0.25, 0.0)
    with pytest.raises(RiskConfigError, match=r"^risk\.swisscovid\.wieghts: unknown setting"):
        SwissCovidModel.from_dict({"wieghts": [1, 0.5, 0]})
    with pytest.raises(RiskConfigError, match=r"^risk\.swisscovid\.weights\[1\]: expected a number"):
        SwissCovidModel.from_dict({"weights": [1, "half", 0]})
    with pytest.raises(RiskConfigError, match=r"^risk\.swisscovid\.weights: 2 threshold"):
        SwissCovidModel.from_dict({"weights": [1, 0.5]})
    with pytest.raises(RiskConfigError, match=r"^risk\.swisscovid\.attenuation_thresholds_db: expected a list"):
        SwissCovidModel.from_dict({"attenuation_thresholds_db": 55})

"""Sighting windows → exposure windows: time not callbacks, gaps, caps, splits, calibration, TX power."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from agent.risk import (
    AttenuationSample,
    CalibrationConfidence,
    DiagnosisKeyMapping,
    ExposureWindow,
    Infectiousness,
    KeyAttributes,
    ReportType,
    RiskInputError,
    ScanInstance,
    SwissCovidModel,
    WindowConfig,
    attenuation_db,
    exposure_windows_from_samples,
    exposure_windows_from_sightings,
)
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow

Sighting = Callable[..., SightingWindow]

DAY = 19_783
DAY_START = DAY * 86_400
TX = -10  # a known sender TX power, so attenuation = -10 - rssi


def seconds(windows: Sequence[ExposureWindow]) -> list[int]:
    return [si.seconds_since_last_scan for w in windows for si in w.scan_instances]


def test_attenuation_formula() -> None:
    assert attenuation_db(tx_power=-10, rssi=-70, receiver_correction=5) == 55


def test_callbacks_do_not_count_as_time(sighting: Sighting) -> None:
    one = exposure_windows_from_sightings([sighting(0, count=1)], tx_power=TX)
    many = exposure_windows_from_sightings([sighting(0, count=500)], tx_power=TX)
    assert seconds(one) == seconds(many) == [60]
    assert one == many


def test_consecutive_minutes_each_stand_for_sixty_seconds(sighting: Sighting) -> None:
    (window,) = exposure_windows_from_sightings([sighting(m, -50) for m in range(15)], tx_power=TX)
    assert window.day == DAY
    assert window.scan_instances == tuple(ScanInstance(40, 40, 60) for _ in range(15))
    assert SwissCovidModel().assess([window]).notify  # 15 min at 40 dB


def test_gaps_add_nothing_with_continuous_scanning(sighting: Sighting) -> None:
    windows = exposure_windows_from_sightings([sighting(0), sighting(10), sighting(11)], tx_power=TX)
    assert seconds(windows) == [60, 60, 60]


def test_duty_cycled_scanning_credits_the_interval_but_never_more_than_the_gap(sighting: Sighting) -> None:
    config = WindowConfig(scan_interval_seconds=300)
    every_5_min = exposure_windows_from_sightings([sighting(m) for m in (0, 5, 10)], tx_power=TX, config=config)
    assert seconds(every_5_min) == [300, 300, 300]
    denser = exposure_windows_from_sightings([sighting(0), sighting(1), sighting(3)], tx_power=TX, config=config)
    assert seconds(denser) == [300, 60, 120]
    long_gap = exposure_windows_from_sightings([sighting(0), sighting(25)], tx_power=TX, config=config)
    assert seconds(long_gap) == [300, 300]


def test_windows_are_cut_at_thirty_minutes_without_adding_time(sighting: Sighting) -> None:
    config = WindowConfig(scan_interval_seconds=300)
    windows = exposure_windows_from_sightings([sighting(m) for m in range(45)], tx_power=TX, config=config)
    assert [len(w.scan_instances) for w in windows] == [30, 15]
    # The second window's first minute follows the first window's last one: 60 s, not a fresh interval.
    assert windows[1].scan_instances[0].seconds_since_last_scan == 60
    assert sum(seconds(windows)) == 300 + 44 * 60


def test_window_length_is_configurable(sighting: Sighting) -> None:
    config = WindowConfig(max_window_seconds=10 * 60)
    windows = exposure_windows_from_sightings([sighting(m) for m in range(25)], tx_power=TX, config=config)
    assert [len(w.scan_instances) for w in windows] == [10, 10, 5]


def test_windows_are_cut_at_utc_midnight(sighting: Sighting) -> None:
    windows = exposure_windows_from_sightings([sighting(m) for m in range(-5, 5)], tx_power=TX)
    assert [(w.day, len(w.scan_instances)) for w in windows] == [(DAY - 1, 5), (DAY, 5)]
    assert windows[0].date == "2024-02-29"


def test_two_ids_in_one_scan_window_count_once(sighting: Sighting) -> None:
    """Around an ID rotation both IDs of one key can be heard in the same minute."""
    old = sighting(0, count=3, rssi_min=-70, rssi_max=-50, rssi_sum=-180, ephemeral_id=b"\x01" * 16)
    new = sighting(0, count=1, rssi=-80, ephemeral_id=b"\x02" * 16)
    (window,) = exposure_windows_from_sightings([old, new], tx_power=TX)
    # typical: count-weighted mean attenuation (3 x 50 + 1 x 70) / 4 = 55; minimum: from the loudest, 40.
    assert window.scan_instances == (ScanInstance(55, 40, 60),)


def test_typical_from_mean_rssi_minimum_from_max_rssi_with_receiver_correction(sighting: Sighting) -> None:
    w = sighting(0, count=3, rssi_min=-80, rssi_max=-61, rssi_sum=-213)  # mean -71
    (window,) = exposure_windows_from_sightings([w], tx_power=TX, receiver_correction=4.0)
    assert window.scan_instances[0].typical_attenuation == -10 - (-71 + 4)  # 57
    assert window.scan_instances[0].min_attenuation == -10 - (-61 + 4)  # 47


def test_attenuation_rounds_half_up_and_clamps(sighting: Sighting) -> None:
    (window,) = exposure_windows_from_sightings([sighting(0, -60)], tx_power=TX, receiver_correction=-0.5)
    assert window.scan_instances[0].typical_attenuation == 51  # 50.5 -> 51
    (close,) = exposure_windows_from_sightings([sighting(0, -5)], tx_power=TX)
    assert close.scan_instances[0].typical_attenuation == 0  # -5 dB: louder than stated, clamps to 0


def test_tx_power_resolution_order(sighting: Sighting) -> None:
    plain = sighting(0, -60, tx_power=-20)
    (given,) = exposure_windows_from_sightings([plain], tx_power=-10)
    assert given.scan_instances[0].typical_attenuation == 50
    assert given.scan_instances_with_assumed_tx_power == 0
    (from_window,) = exposure_windows_from_sightings([plain], tx_power=None)
    assert from_window.scan_instances[0].typical_attenuation == 40
    assert from_window.assumed_tx_power is None


def test_missing_tx_power_uses_the_configured_default_and_says_so(sighting: Sighting) -> None:
    config = WindowConfig(default_tx_power=-12)
    (window,) = exposure_windows_from_sightings(
        [sighting(0, -60), sighting(1, -60)], tx_power=[None, -10], config=config
    )
    assert [si.typical_attenuation for si in window.scan_instances] == [48, 50]
    assert window.assumed_tx_power == -12
    assert window.scan_instances_with_assumed_tx_power == 1
    (day,) = SwissCovidModel().assess([window]).days
    assert day.notes == ("the sender's TX power was unknown for 1 of 2 scan instance(s); -12 dBm was assumed for them",)


def test_per_window_tx_power_must_match_the_windows(sighting: Sighting) -> None:
    with pytest.raises(RiskInputError, match="tx_power has 1 values for 2 sighting windows"):
        exposure_windows_from_sightings([sighting(0), sighting(1)], tx_power=[-10])
    with pytest.raises(RiskInputError, match="int8 dBm"):
        exposure_windows_from_sightings([sighting(0)], tx_power=300)


def test_key_attributes_and_calibration_reach_every_window(sighting: Sighting) -> None:
    mapping = DiagnosisKeyMapping(
        days_since_onset_to_infectiousness={0: Infectiousness.HIGH, 1: Infectiousness.HIGH},
        infectiousness_for_unlisted_days=Infectiousness.NONE,
    )
    config = WindowConfig(diagnosis_keys=mapping)
    key = KeyAttributes(transmission_risk_level=6, report_type=None, days_since_onset=1)
    windows = exposure_windows_from_sightings(
        [sighting(m) for m in range(40)],
        tx_power=TX,
        key=key,
        calibration_confidence=CalibrationConfidence.MEDIUM,
        config=config,
    )
    assert len(windows) == 2
    for w in windows:
        assert w.transmission_risk_level == 6
        assert w.report_type == ReportType.CONFIRMED_TEST  # report_type_when_missing
        assert w.infectiousness == Infectiousness.HIGH
        assert w.calibration_confidence == CalibrationConfidence.MEDIUM
    (far,) = exposure_windows_from_sightings(
        [sighting(0)], tx_power=TX, key=KeyAttributes(days_since_onset=9), config=config
    )
    assert far.infectiousness == Infectiousness.NONE
    (unknown,) = exposure_windows_from_sightings([sighting(0)], tx_power=TX, config=config)
    assert unknown.infectiousness == Infectiousness.STANDARD  # infectiousness_when_onset_missing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count must be >= 1"),
        ({"rssi_min": -40, "rssi_max": -60}, "rssi_min -40 is above rssi_max -60"),
        ({"count": 2, "rssi_min": -70, "rssi_max": -60, "rssi_sum": -100}, "rssi_sum -100 is impossible"),
    ],
)
def test_bad_sighting_windows_are_refused_without_naming_the_id(
    sighting: Sighting, kwargs: dict[str, int], message: str
) -> None:
    secret = bytes(range(16))
    with pytest.raises(RiskInputError, match=message) as err:
        exposure_windows_from_sightings([sighting(0, ephemeral_id=secret, **kwargs)], tx_power=TX)
    assert secret.hex() not in str(err.value)
    assert str(DAY_START) in str(err.value)  # names the window by its start time instead


def test_one_key_means_one_scheme(sighting: Sighting) -> None:
    with pytest.raises(RiskInputError, match="one scheme"):
        exposure_windows_from_sightings([sighting(0), sighting(1, scheme=SchemeName.DP3T)], tx_power=TX)


def test_no_sightings_no_windows() -> None:
    assert exposure_windows_from_sightings([], tx_power=TX) == ()


def test_samples_path_for_reported_attenuations() -> None:
    """The backend starts from a device's per-EBID attenuation stats, not from sighting windows."""
    samples = [AttenuationSample(DAY_START + m * 60, 52.4, 48.0) for m in range(16)]
    (window,) = exposure_windows_from_samples(samples, key=KeyAttributes(report_type=ReportType.CONFIRMED_TEST))
    assert window.scan_instances[0] == ScanInstance(52, 48, 60)
    assert SwissCovidModel().assess([window]).notify
    with pytest.raises(RiskInputError, match="count must be a positive integer"):
        AttenuationSample(DAY_START, 50.0, 50.0, count=0)
    with pytest.raises(RiskInputError, match="finite number"):
        AttenuationSample(DAY_START, float("nan"), 50.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scan_interval_seconds": 30}, "scan_interval_seconds must be a whole number >= 60"),
        ({"max_window_seconds": 0}, "max_window_seconds"),
        ({"default_tx_power": 200}, "default_tx_power"),
    ],
)
def test_window_config_is_validated(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowConfig(**kwargs)

"""Properties that must hold for any input: no negative scores, more sightings never less risk, time
conserved however many callbacks or IDs, windows within their bounds."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.risk import (
    Assessment,
    CwaModel,
    ExposureWindow,
    Infectiousness,
    KeyAttributes,
    ReportType,
    ScanInstance,
    SwissCovidModel,
    exposure_windows_from_sightings,
)
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow

START = 19_783 * 86_400 - 600  # ten minutes before a UTC midnight, so day splits get exercised
CWA = CwaModel.from_dict(
    json.loads((Path(__file__).resolve().parent.parent / "data" / "cwa_risk_cases.json").read_text())["inputs"][
        "defaultRiskCalculationConfiguration"
    ]
)
MODELS = (SwissCovidModel(), SwissCovidModel(round_minutes_up=False, attenuation="minimum"), CWA)

scan_instances = st.builds(
    ScanInstance,
    typical_attenuation=st.integers(0, 255),
    min_attenuation=st.integers(0, 255),
    seconds_since_last_scan=st.integers(-100_000, 100_000),
)
exposure_windows = st.builds(
    ExposureWindow,
    day=st.integers(19_780, 19_790),
    scan_instances=st.lists(scan_instances, max_size=8).map(tuple),
    report_type=st.sampled_from(ReportType),
    infectiousness=st.sampled_from(Infectiousness),
    transmission_risk_level=st.none() | st.integers(1, 8),
)


def window(minute: int, rssi: int, count: int = 1, ephemeral_id: bytes = b"\x00" * 16) -> SightingWindow:
    start = START + minute * 60
    return SightingWindow(
        SchemeName.GAEN, ephemeral_id, start, count, rssi, rssi, rssi * count, None, b"", start, start + 59
    )


sightings = st.dictionaries(st.integers(0, 120), st.integers(-100, -30), min_size=1, max_size=60)


def scores(assessment: Assessment) -> dict[int, float]:
    return {d.day: d.score for d in assessment.days}


@given(st.lists(exposure_windows, max_size=6))
def test_scores_and_minutes_are_never_negative(windows: list[ExposureWindow]) -> None:
    for model in MODELS:
        result = model.assess(windows)
        for day in result.days:
            assert day.score >= 0
            assert all(b.minutes >= 0 and b.weighted_minutes >= 0 for b in day.buckets)
        assert result.days_with_high_risk + result.days_with_low_risk <= len(result.days)


@settings(max_examples=60)
@given(sightings, st.integers(0, 120), st.integers(-100, -30), st.none() | st.integers(1, 8))
def test_another_sighted_minute_never_lowers_a_score(
    seen: dict[int, int], minute: int, rssi: int, trl: int | None
) -> None:
    key = KeyAttributes(transmission_risk_level=trl)
    before = exposure_windows_from_sightings([window(m, r) for m, r in seen.items()], tx_power=0, key=key)
    more = {**seen, minute: seen.get(minute, rssi)}
    after = exposure_windows_from_sightings([window(m, r) for m, r in more.items()], tx_power=0, key=key)
    for model in MODELS:
        old, new = model.assess(before), model.assess(after)
        for day, score in scores(old).items():
            assert scores(new)[day] >= score
        assert new.notify or not old.notify


@settings(max_examples=60)
@given(sightings, st.integers(1, 1000), st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=3))
def test_time_is_conserved_whatever_the_callbacks_and_ids(seen: dict[int, int], count: int, ids: list[bytes]) -> None:
    """Each sighted minute is 60 s once, however many callbacks and however many IDs of the key saw it."""
    plain = exposure_windows_from_sightings([window(m, r) for m, r in seen.items()], tx_power=0)
    noisy = exposure_windows_from_sightings([window(m, r, count, i) for m, r in seen.items() for i in ids], tx_power=0)
    assert plain == noisy
    total = sum(si.seconds_since_last_scan for w in plain for si in w.scan_instances)
    assert total == 60 * len(seen)


@settings(max_examples=60)
@given(sightings)
def test_windows_stay_within_thirty_minutes_and_one_day(seen: dict[int, int]) -> None:
    windows = exposure_windows_from_sightings([window(m, r) for m, r in seen.items()], tx_power=0)
    starts = sorted(START + m * 60 for m in seen)
    assert sum(len(w.scan_instances) for w in windows) == len(starts)
    position = 0
    for w in windows:
        covered = starts[position : position + len(w.scan_instances)]
        position += len(w.scan_instances)
        assert covered[-1] - covered[0] < 30 * 60
        assert {s // 86_400 for s in covered} == {w.day}

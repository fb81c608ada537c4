"""The radio model: log-distance path loss, noise, cut-off, moving positions, advertising events."""

from __future__ import annotations

import math
import random

import pytest

from agent.sim.radio import (
    ADV_DELAY_MAX_S,
    RadioParams,
    Track,
    Waypoint,
    advertising_events,
    distance,
    max_range_m,
    mean_rssi,
    path_loss_db,
    sample_rssi,
)

QUIET = RadioParams(noise_sigma_db=0.0)


def test_path_loss_follows_log_distance() -> None:
    p = RadioParams(path_loss_exponent=2.0, loss_at_1m_db=41.0)
    assert path_loss_db(1.0, p) == pytest.approx(41.0)
    assert path_loss_db(10.0, p) == pytest.approx(61.0)
    assert path_loss_db(100.0, p) == pytest.approx(81.0)
    indoor = RadioParams(path_loss_exponent=3.0, loss_at_1m_db=41.0)
    assert path_loss_db(10.0, indoor) == pytest.approx(71.0)


def test_rssi_is_tx_power_minus_loss_and_falls_with_distance() -> None:
    assert mean_rssi(0, 1.0, QUIET) == pytest.approx(-41.0)
    assert mean_rssi(-8, 1.0, QUIET) == pytest.approx(-49.0)
    values = [sample_rssi(0, d, QUIET, random.Random(1)) for d in (0.5, 1, 2, 5, 10, 50)]
    assert values == sorted(values, reverse=True)
    assert values[1] == -41


def test_distance_below_the_minimum_is_clamped() -> None:
    assert mean_rssi(0, 0.0, QUIET) == mean_rssi(0, QUIET.min_distance_m, QUIET)


def test_beyond_the_cutoff_the_advert_is_lost() -> None:
    p = RadioParams(noise_sigma_db=0.0, cutoff_rssi=-90.0)
    edge = max_range_m(0, p)
    assert mean_rssi(0, edge, p) == pytest.approx(-90.0)
    assert sample_rssi(0, edge * 0.9, p, random.Random(0)) is not None
    assert sample_rssi(0, edge * 1.1, p, random.Random(0)) is None


def test_noise_is_gaussian_and_seeded() -> None:
    p = RadioParams(noise_sigma_db=4.0)
    a = [sample_rssi(0, 3.0, p, random.Random(42)) for _ in range(3)]
    rng1, rng2 = random.Random(7), random.Random(7)
    seq1 = [sample_rssi(0, 3.0, p, rng1) for _ in range(2000)]
    seq2 = [sample_rssi(0, 3.0, p, rng2) for _ in range(2000)]
    assert seq1 == seq2 and len(set(a)) == 1
    values = [v for v in seq1 if v is not None]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert mean == pytest.approx(mean_rssi(0, 3.0, p), abs=0.5)
    assert sd == pytest.approx(4.0, abs=0.5)


def test_rssi_is_clamped_to_the_hci_range() -> None:
    hot = RadioParams(noise_sigma_db=0.0, loss_at_1m_db=0.0)
    assert sample_rssi(20, 0.1, hot, random.Random(0)) == 20


def test_track_interpolates_and_holds_at_the_ends() -> None:
    track = Track((Waypoint(100.0, 0.0, 0.0), Waypoint(200.0, 10.0, 0.0), Waypoint(300.0, 10.0, 20.0)))
    assert track.position_at(0.0) == (0.0, 0.0)
    assert track.position_at(150.0) == (5.0, 0.0)
    assert track.position_at(250.0) == (10.0, 10.0)
    assert track.position_at(1e9) == (10.0, 20.0)
    assert distance((0.0, 0.0), (3.0, 4.0)) == 5.0


def test_track_must_be_in_time_order() -> None:
    with pytest.raises(ValueError, match="time order"):
        Track((Waypoint(2.0, 0, 0), Waypoint(1.0, 0, 0)))
    with pytest.raises(ValueError):
        Track(())


def test_advertising_events_count_intervals_in_a_tick() -> None:
    rng = random.Random(0)
    n, nxt = advertising_events(100.0, 99.0, 0.1, rng)
    assert (n, nxt) == (0, 100.0)
    n, nxt = advertising_events(100.0, 100.05, 0.1, rng)
    assert n == 1 and 100.1 <= nxt <= 100.1 + ADV_DELAY_MAX_S
    # an accelerated tick spanning ten minutes of 1.28 s intervals
    n, nxt = advertising_events(0.0, 600.0, 1.28, rng)
    assert 600 / (1.28 + ADV_DELAY_MAX_S) <= n <= 600 / 1.28 + 1
    assert nxt > 600.0


def test_bad_radio_params_are_refused() -> None:
    with pytest.raises(ValueError, match="path_loss_exponent"):
        RadioParams(path_loss_exponent=0)
    with pytest.raises(ValueError, match="noise"):
        RadioParams(noise_sigma_db=-1)

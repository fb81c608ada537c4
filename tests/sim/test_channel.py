"""The fitted channel against the public measurements it was fitted to (a slice in tests/data)."""

import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sim.channel import FITTED, Channel
from agent.sim.radio import RadioParams, mean_rssi
from agent.testbed.datasets import read_measurements
from agent.testbed.fit_channel import fit_channel, goodness_of_fit, split

DATA = Path(__file__).resolve().parents[1] / "data" / "rss-two-people"
# Measured: on the full data set the fit is within 3 dB (median) and 5 dB (90th percentile) per distance on
# the steps it was fitted on, 4 and 3 dB on the held-back ones (hw/README.md); on this slice (a tenth of the
# adverts, one carriage file fewer) within 4 and 7 dB. The model's upper tail is a little too loud: its
# fading is normal, real deep fades skew the other way.
MEDIAN_TOLERANCE_DB = 4.0
P90_TOLERANCE_DB = 7.0


@pytest.fixture(scope="module")
def measurements():  # type: ignore[no-untyped-def]
    return [m for f in sorted(DATA.glob("RSS_human*.csv")) for m in read_measurements(f)]


def test_fit_matches_fitted_and_held_back_distances(measurements) -> None:  # type: ignore[no-untyped-def]
    fit_part, held = split(measurements)
    assert {m.distance_m for m in fit_part}.isdisjoint({m.distance_m for m in held})
    fitted = fit_channel(fit_part)
    for part in (fit_part, held):
        bins = goodness_of_fit(fitted, part)
        assert len(bins) >= 6
        for b in bins:
            assert abs(b.median_error) <= MEDIAN_TOLERANCE_DB, b
            assert abs(b.p90_error) <= P90_TOLERANCE_DB, b


def test_a_straight_line_without_the_body_would_not_fit(measurements) -> None:  # type: ignore[no-untyped-def]
    """The goodness-of-fit check can fail: a model that ignores carriage misses pocket-pocket by far."""
    fitted = fit_channel(split(measurements)[0])
    no_body = type(fitted)(**{**fitted.__dict__, "pocket_loss_db": 0.0, "backpack_loss_db": 0.0})
    pocket = [m for m in measurements if m.carriage == "PP"]
    assert max(abs(b.median_error) for b in goodness_of_fit(no_body, pocket)) > 10


def test_the_shipped_constants_are_what_the_data_gives(measurements) -> None:  # type: ignore[no-untyped-def]
    fitted = fit_channel(split(measurements)[0])
    assert FITTED.path_loss_exponent == pytest.approx(fitted.path_loss_exponent, abs=0.3)
    assert FITTED.pocket_loss_db == pytest.approx(fitted.pocket_loss_db, abs=2.0)
    assert FITTED.backpack_loss_db == pytest.approx(fitted.backpack_loss_db, abs=2.0)
    assert FITTED.shadowing_sigma_db == pytest.approx(fitted.shadowing_sigma_db, abs=1.5)
    assert FITTED.noise_sigma_db == pytest.approx(fitted.fading_sigma_db, abs=1.5)


def test_the_channel_draws_what_its_parameters_say() -> None:
    channel = Channel(FITTED, seed=5)
    rng = random.Random(1)
    values = [channel.sample(f"tx{i}", f"rx{i}", -8, 1.0, t, rng) for i in range(400) for t in range(0, 4 * 3600, 300)]
    got = [v for v in values if v is not None]
    loss = (FITTED.pocket_loss_db + FITTED.backpack_loss_db) / 3  # per end, hand/pocket/backpack alike
    assert statistics.mean(got) == pytest.approx(mean_rssi(-8, 1.0, FITTED) - 2 * loss, abs=1.5)
    carriage_var = (FITTED.pocket_loss_db**2 + FITTED.backpack_loss_db**2) / 3 - loss**2
    spread = (
        FITTED.noise_sigma_db**2 + FITTED.shadowing_sigma_db**2 + FITTED.device_sigma_db**2 + 2 * carriage_var
    ) ** 0.5
    assert statistics.stdev(got) == pytest.approx(spread, rel=0.15)
    again = Channel(FITTED, seed=5)
    assert again.mean_rssi("tx1", "rx1", -8, 1.0, 100.0) == channel.mean_rssi("tx1", "rx1", -8, 1.0, 100.0)
    assert Channel(FITTED, seed=6).mean_rssi("tx1", "rx1", -8, 1.0, 100.0) != channel.mean_rssi(
        "tx1", "rx1", -8, 1.0, 100.0
    )


def test_only_the_ideal_channel_is_ideal() -> None:
    assert RadioParams().ideal
    assert not FITTED.ideal
    # beyond the data's 5 m the loss grows as in free space: people at home (10 km apart) hear nobody
    assert mean_rssi(-8, 10_000, FITTED) < FITTED.cutoff_rssi - 20
    assert mean_rssi(-8, 5.0, FITTED) - mean_rssi(-8, 10.0, FITTED) == pytest.approx(20 * 0.30103, abs=0.01)
    with pytest.raises(ValueError, match="pocket_loss_db must not be negative"):
        RadioParams(pocket_loss_db=-1)


def test_fit_channel_command_prints_the_fit_and_refuses_other_files(tmp_path: Path) -> None:
    files = [str(f) for f in sorted(DATA.glob("RSS_human*.csv"))]
    out = subprocess.run(
        [sys.executable, "-m", "agent", "testbed", "fit-channel", *files], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "path-loss exponent" in out.stdout and "held back:" in out.stdout and "0.4 m" in out.stdout
    other = tmp_path / "RSS_humanXY.csv"
    other.write_text("device,elapsed,rss,mRSS10,mRSS100,dist,label\n")
    bad = subprocess.run(
        [sys.executable, "-m", "agent", "testbed", "fit-channel", str(other)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "expected a file named RSS_human<XY>.csv" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0

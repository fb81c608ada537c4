"""Trace replay on public measurements (a slice with ground truth) and on bad input."""

import csv
import itertools
import math
from collections import defaultdict
from pathlib import Path

import pytest

from agent.schemes.base import SchemeName
from agent.testbed.datasets import TWO_PEOPLE_EPOCH, measurements_to_trace, read_measurements
from agent.testbed.replay import DEFAULT_TX_POWER, ReplayError, ReplaySettings, replay
from agent.testbed.trace import TraceError, format_trace, parse_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "rss-two-people"
CONTACT_M = 2.0
CONTACT_MIN = 15.0
# These phones hear far below a calibrated reference (hand to hand at 1 m about -79 dBm): uncorrected, not
# one pair reaches 15 weighted minutes. A receiver correction of +20 dB, as a per-model calibration would
# give, makes hand-hand notify and leaves pocket-pocket (-91 dBm at 20 cm) unnotified.
RX_CORRECTION = 20.0


def independent_counts(path: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (receiver, sender): minutes within 2 m (each row holds until the next, at most 60 s) and the
    SwissCovid score by hand: per 60-s window the mean RSSI, attenuation -8 dBm minus it and the receiver
    correction (half up), one
    minute weighted 1.0 under 55 dB, 0.5 under 63 dB, else 0. No agent code."""
    rows = list(csv.DictReader(path.open()))
    carriage = path.stem.removeprefix("RSS_human")
    phones = sorted({r["device"] for r in rows})
    out = {}
    for me in phones:
        other = phones[1 - phones.index(me)]
        mine = sorted((float(r["elapsed"]), float(r["rss"]), float(r["dist"])) for r in rows if r["device"] == me)
        windows: dict[int, list[float]] = defaultdict(list)
        for t, rss, _ in mine:
            windows[int(TWO_PEOPLE_EPOCH + t) // 60].append(rss)
        score = 0.0
        for values in windows.values():
            a = math.floor(DEFAULT_TX_POWER - (sum(values) / len(values) + RX_CORRECTION) + 0.5)
            score += 1.0 if a < 55 else 0.5 if a < 63 else 0.0
        out[(f"{carriage}/{me}", f"{carriage}/{other}")] = (score, 0.0)
    # distance is symmetric: both phones' rows sample it (the first row at an instant counts)
    first: dict[float, float] = {}
    for r in rows:
        first.setdefault(float(r["elapsed"]), float(r["dist"]))
    both = sorted(first.items())
    seconds = sum(min(b[0] - a[0], 60.0) for a, b in itertools.pairwise(both) if a[1] <= CONTACT_M * 100)
    seconds += 60.0 if both[-1][1] <= CONTACT_M * 100 else 0.0
    return {pair: (score, seconds / 60) for pair, (score, _) in out.items()}


@pytest.mark.parametrize("scheme", ["gaen", "dp3t", "ebid"])
def test_public_slice_scores_match_an_independent_count(scheme: str, tmp_path: Path) -> None:
    """Lists: the receiver scores what it heard of the positive. EBID: the positive reports what it heard
    and the backend scores the receiver on that, so the pair's figures are counted the other way round."""
    files = sorted(DATA.glob("RSS_human*.csv"))
    trace = measurements_to_trace(m for f in files for m in read_measurements(f))
    settings = ReplaySettings(
        SchemeName(scheme),
        contact_distance_m=CONTACT_M,
        contact_minutes=CONTACT_MIN,
        receiver_correction=RX_CORRECTION,
    )
    result = replay(trace, settings, tmp_path)
    expected = {}
    for f in files:
        expected |= independent_counts(f)
    by_pair = {(p.receiver, p.transmitter): p for p in result.pairs}
    for pair, (score, close) in expected.items():
        p = by_pair[(pair[1], pair[0]) if scheme == "ebid" else pair]
        assert p.score == pytest.approx(score), pair
        assert p.close_minutes == pytest.approx(close, abs=0.05), pair
        assert p.true_contact == (close >= CONTACT_MIN)
        assert p.notified == (score >= 15)
    # phones of different files never met: those pairs are true negatives, never heard
    strangers = [p for p in result.pairs if p.receiver.split("/")[0] != p.transmitter.split("/")[0]]
    assert strangers and all(not p.notified and not p.true_contact and p.heard == 0 for p in strangers)
    c = result.confusion
    tp = sum(1 for s, m in expected.values() if s >= 15 and m >= CONTACT_MIN)
    fn = sum(1 for s, m in expected.values() if s < 15 and m >= CONTACT_MIN)
    assert (c.true_positives, c.false_negatives) == (tp, fn)
    assert c.true_negatives == len(strangers) + sum(1 for s, m in expected.values() if s < 15 and m < CONTACT_MIN)
    assert 0 < c.recall < 1  # hand-hand notifies, pocket-pocket (~-91 dBm at 20 cm) does not
    assert c.recall == pytest.approx(tp / (tp + fn))


def test_trace_round_trips_through_its_text(tmp_path: Path) -> None:
    trace = measurements_to_trace(read_measurements(DATA / "RSS_humanHB.csv"))
    again = parse_trace("".join(format_trace(trace)))
    assert again.scan == trace.scan and len(again.rows) == len(trace.rows)
    assert [(r.receiver, r.rssi, r.distance_m) for r in again.rows] == [
        (r.receiver, r.rssi, r.distance_m) for r in trace.rows
    ]


HEADER = "time,receiver,transmitter,rssi,tx_power,receiver_model,transmitter_model,distance_m\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,receiver\n", "line 1: expected '# proxitrace-trace v1"),
        ("# proxitrace-trace v9\n" + HEADER, "version 'v9' is not supported"),
        ("# proxitrace-trace v1 scan=duty-cycle\n" + HEADER, "needs period=SECONDS"),
        ("# proxitrace-trace v1 scan=duty-cycle period=20\n" + HEADER, "under the 60-s sighting window"),
        ("# proxitrace-trace v1\ntime,rssi\n", "line 2: expected the header"),
        ("# proxitrace-trace v1\n" + HEADER + "1,a,b,-60,,,,\n2,a,b\n", "line 4: 3 fields"),
        ("# proxitrace-trace v1\n" + HEADER + "noon,a,b,-60,,,,\n", "line 3: time 'noon'"),
        ("# proxitrace-trace v1\n" + HEADER + "1,a,b,loud,,,,\n", "line 3: rssi 'loud' is not a number"),
        ("# proxitrace-trace v1\n" + HEADER + "1,a,b,-60,,,,-2\n", "line 3: distance_m must be a non-negative"),
        ("# proxitrace-trace v1\n" + HEADER, "the trace has no rows"),
    ],
)
def test_bad_traces_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as err:
        parse_trace(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_replay_refuses_what_it_cannot_score(tmp_path: Path) -> None:
    silent = parse_trace("# proxitrace-trace v1\n" + HEADER + "1,a,b,,,,,1.0\n")
    with pytest.raises(ReplayError, match="no received adverts"):
        replay(silent, ReplaySettings(), tmp_path)
    trace = parse_trace("# proxitrace-trace v1\n" + HEADER + "1,a,b,-60,,,,1.0\n")
    with pytest.raises(ReplayError, match="not in the trace: zed"):
        replay(trace, ReplaySettings(SchemeName.EBID, positives=frozenset({"zed"})), tmp_path)

"""Per-model calibration fitted from a trace: known offsets come back, and the written table is one the
agent's own calibration rule (calibration.resolve) then uses."""

from __future__ import annotations

import csv
import math
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.calibration import FREE_SPACE_LOSS_1M_DB, load_table, resolve
from agent.cli import cli
from agent.testbed.fit_calibration import CalibrationFitError, fit_calibration
from agent.testbed.trace import ScanBehaviour, Trace, TraceRow, format_trace, parse_trace

ROOT = Path(__file__).resolve().parents[2]
# model -> (radiated TX dBm, receiver correction dB); the first is the reference receiver (correction 0).
TRUE = {"usb:0a12:0001": (-4.0, 0.0), "usb:2357:0604": (-11.0, 6.0), "pi:Raspberry Pi 4": (-17.0, -3.5)}
EXPONENT = 2.3
NOISE_DB = 4.0


def synthetic_rows(seed: int = 7) -> list[TraceRow]:
    rng = random.Random(seed)
    rows = []
    models = list(TRUE)
    for k in range(6000):
        tx, rx = rng.sample(models, 2)
        d = rng.uniform(0.3, 6.0)
        rssi = (
            TRUE[tx][0] - TRUE[rx][1] - FREE_SPACE_LOSS_1M_DB - 10 * EXPONENT * math.log10(d) + rng.gauss(0, NOISE_DB)
        )
        rows.append(TraceRow(1_800_000_000 + k, f"dev-{rx}", f"dev-{tx}", round(rssi), -8, rx, tx, round(d, 2)))
    return rows


def test_known_offsets_are_recovered() -> None:
    fitted = fit_calibration(synthetic_rows(), reference="usb:0a12:0001")
    assert fitted.path_loss_exponent == pytest.approx(EXPONENT, abs=0.1)
    assert fitted.residual_db == pytest.approx(NOISE_DB, abs=0.5)
    for m in fitted.models:
        tx, correction = TRUE[m.model]
        assert m.tx_power == pytest.approx(tx, abs=0.7)
        assert m.rssi_correction == pytest.approx(correction, abs=0.7)


def test_a_trace_without_models_or_distances_is_refused() -> None:
    rows = synthetic_rows()[:50]
    with pytest.raises(CalibrationFitError, match="both models"):
        fit_calibration([TraceRow(r.time, r.receiver, r.transmitter, r.rssi) for r in rows])
    one_distance = [
        TraceRow(r.time, r.receiver, r.transmitter, r.rssi, None, r.receiver_model, r.transmitter_model, 1.0)
        for r in rows
    ]
    with pytest.raises(CalibrationFitError, match="cannot tell"):
        fit_calibration(one_distance)


def test_fit_calibration_writes_a_table_the_agent_resolves(tmp_path: Path) -> None:
    trace = tmp_path / "bench.csv"
    trace.write_text("".join(format_trace(Trace(ScanBehaviour(), tuple(synthetic_rows())))))
    table = tmp_path / "calibration.toml"
    shutil.copy(ROOT / "hw" / "calibration.toml", table)
    before = table.read_text()
    result = CliRunner().invoke(
        cli, ["testbed", "fit-calibration", str(trace), "--reference", "usb:0a12:0001", "--write", str(table)]
    )
    assert result.exit_code == 0, result.output
    assert "path-loss exponent 2.3" in result.output
    written = load_table(table)
    for model, (tx, correction) in TRUE.items():
        c = resolve(written, [model], None)
        assert c.source == f"table:{model}"
        assert abs(c.tx_power - tx) <= 1
        assert c.rssi_correction == pytest.approx(correction, abs=0.7)
    # the hand-written parts stay: comments, names, quirks, the other models
    assert written["models"]["usb:0a12:0001"]["quirks"].startswith("legacy advertising only")  # type: ignore[index]
    assert set(load_table(ROOT / "hw" / "calibration.toml")["models"]) <= set(written["models"])  # type: ignore[arg-type]
    assert before.splitlines()[0] in table.read_text()


HH = ROOT / "tests" / "data" / "rss-two-people" / "RSS_humanHH.csv"  # public data, hand to hand (its LICENSE)


def independent_corrections(path: Path, tx_power: float) -> tuple[dict[str, float], float]:
    """The same least squares by hand, from the CSV itself: y = RSSI + L(1 m) - TX = -correction(phone)
    - n·x with x = 10·log10(d). One slope shared by per-phone intercepts: n from the within-phone
    covariance of x and y, each intercept from that phone's means. No agent code, no numpy."""
    by_phone: dict[str, list[tuple[float, float]]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            x = 10 * math.log10(float(r["dist"]) / 100)
            y = round(float(r["rss"])) + FREE_SPACE_LOSS_1M_DB - tx_power
            by_phone.setdefault(f"phone:{r['device']}", []).append((x, y))
    sxy = sxx = 0.0
    means = {}
    for phone, points in by_phone.items():
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        means[phone] = (mx, my)
        sxy += sum((x - mx) * (y - my) for x, y in points)
        sxx += sum((x - mx) ** 2 for x, _ in points)
    n = -sxy / sxx
    return {phone: -(my + n * mx) for phone, (mx, my) in means.items()}, n


def test_the_public_phones_fit_as_an_independent_least_squares_does(tmp_path: Path) -> None:
    made = CliRunner().invoke(cli, ["testbed", "trace-from-data", str(HH), "-o", str(tmp_path / "hh.csv")])
    assert made.exit_code == 0, made.output
    fitted = fit_calibration(parse_trace((tmp_path / "hh.csv").read_text()).rows, fixed_tx_power=-8)
    expected, exponent = independent_corrections(HH, -8)
    assert fitted.path_loss_exponent == pytest.approx(exponent, abs=1e-6)
    assert {m.model: m.rssi_correction for m in fitted.models} == pytest.approx(expected, abs=1e-6)
    assert {m.tx_power for m in fitted.models} == {-8}
    # the shipped table holds what the whole file gave; the test's slice (every 10th row) within 1 dB
    shipped = load_table(ROOT / "hw" / "calibration.toml")["models"]
    for phone, correction in expected.items():
        c = resolve({"models": shipped}, [phone], None)  # type: ignore[dict-item]
        assert (c.source, c.tx_power) == (f"table:{phone}", -8)
        assert c.rssi_correction == pytest.approx(correction, abs=1.0)


def test_a_fixed_tx_fit_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    rows = synthetic_rows()[:50]
    one_distance = [
        TraceRow(r.time, r.receiver, r.transmitter, r.rssi, None, r.receiver_model, r.transmitter_model, 1.0)
        for r in rows
    ]
    with pytest.raises(CalibrationFitError, match="cannot tell the distances apart"):
        fit_calibration(one_distance, fixed_tx_power=-8)
    trace = tmp_path / "t.csv"
    trace.write_text("".join(format_trace(Trace(ScanBehaviour(), tuple(rows)))))
    both = ["testbed", "fit-calibration", str(trace), "--fixed-tx-power", "-8", "--reference", "usb:0a12:0001"]
    result = CliRunner().invoke(cli, both)
    assert result.exit_code == 1 and "exclude each other" in result.output

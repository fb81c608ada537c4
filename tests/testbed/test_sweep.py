"""Sweep and fit on the public slice: a PR curve, and a [risk] table the agent's config loader takes."""

import csv
import itertools
import subprocess
import sys
from pathlib import Path

from agent.config import load_config, risk_settings
from agent.risk import SwissCovidModel
from agent.schemes.base import SchemeName
from agent.testbed.datasets import measurements_to_trace, read_measurements
from agent.testbed.replay import ReplaySettings, replay
from agent.testbed.sweep import Candidate, evaluate, fit, pr_front, risk_table, split, sweep
from agent.testbed.trace import format_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "rss-two-people"
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_sweep_scores_as_the_real_path_does(tmp_path: Path) -> None:
    trace = measurements_to_trace(m for f in sorted(DATA.glob("RSS_human*.csv")) for m in read_measurements(f))
    base = replay(trace, ReplaySettings(SchemeName.GAEN, receiver_correction=20.0), tmp_path)
    points = sweep(base.pairs, base.evidence, base.risk, 20.0)
    front = pr_front(points)
    assert len(points) > 500 and front
    assert all(a.confusion.recall < b.confusion.recall for a, b in itertools.pairwise(front))
    for candidate in (Candidate((54.0, 60.0), (1.0, 0.5, 0.0), 10.0), Candidate((66.0, 72.0), (1.0, 1.0, 0.0), 5.0)):
        again = replay(
            trace,
            ReplaySettings(SchemeName.GAEN, base.risk.__class__(candidate.model(), base.risk.windows), 2.0, 15.0, 20.0),
            tmp_path,
        )
        assert evaluate(candidate, base.pairs, base.evidence, base.risk, 20.0) == again.confusion
    fit_half, held = split(base.pairs)
    assert (
        fit_half
        and held
        and not {(p.receiver, p.transmitter) for p in fit_half} & {(p.receiver, p.transmitter) for p in held}
    )
    best = fit(points, 0.0)
    assert best is not None and best.confusion.precision == max(p.confusion.precision for p in points)
    assert fit(points, 1.01) is None


def test_replay_sweep_and_fit_from_the_command_line(tmp_path: Path) -> None:
    made = _cli("testbed", "trace-from-data", *map(str, sorted(DATA.glob("*.csv"))), "-o", "trace.csv", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    out = _cli(
        "testbed",
        "replay",
        "trace.csv",
        "--rssi-correction",
        "20",
        "--sweep",
        "--fit",
        "--target-recall",
        "0.8",
        "--report",
        "rep",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    report = tmp_path / "rep"
    assert (report / "pr-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((report / "sweep.csv").open()))
    assert len(rows) > 500 and {"precision", "recall", "notify_at"} <= set(rows[0])
    table = (report / "fitted-risk.toml").read_text()
    assert table in out.stdout and "held back (" in out.stdout
    config_file = tmp_path / "agent.toml"
    config_file.write_text(table)
    model = risk_settings(load_config(config_file)).model
    assert isinstance(model, SwissCovidModel) and model != SwissCovidModel()
    assert table == risk_table(
        Candidate(model.attenuation_thresholds_db, model.weights, model.notify_at_weighted_minutes)
    )  # type: ignore[arg-type]
    # the fitted settings, given to replay as an agent config, are what the agent then uses
    again = _cli(
        "--config",
        str(config_file),
        "testbed",
        "replay",
        "trace.csv",
        "--rssi-correction",
        "20",
        "--json",
        "r.json",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr


def test_replay_command_refuses_a_bad_trace_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("# proxitrace-trace v1\ntime,receiver,transmitter,rssi\n1,a,b,x\n")
    out = _cli("testbed", "replay", "bad.csv", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0
    assert "bad.csv: line 3: rssi 'x' is not a number" in out.stderr
    missing = _cli("testbed", "replay", "missing.csv", cwd=tmp_path)
    assert missing.returncode == 1 and "missing.csv: No such file" in missing.stderr


def test_trace_files_are_the_documented_format(tmp_path: Path) -> None:
    trace = measurements_to_trace(read_measurements(DATA / "RSS_humanHH.csv"))
    lines = "".join(format_trace(trace)).splitlines()
    assert lines[0] == "# proxitrace-trace v1 scan=continuous"
    assert lines[1] == "time,receiver,transmitter,rssi,tx_power,receiver_model,transmitter_model,distance_m"
    documented = (ROOT / "hw" / "README.md").read_text()
    assert lines[1] in documented and "# proxitrace-trace v1 scan=duty-cycle period=" in documented

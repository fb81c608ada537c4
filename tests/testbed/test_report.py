"""The test-bed's report: every scheme's timeline (EBID's scored by the backend's scoring), re-scoring a
pair gives the decision replay reached, and the summary's column for fitted risk settings."""

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.risk import RiskSettings, SwissCovidModel
from agent.schemes.base import SchemeName
from agent.testbed.datasets import measurements_to_trace, read_measurements
from agent.testbed.plot import pair_timeline
from agent.testbed.replay import ReplaySettings, assess_pair, attenuations, best_score, replay
from agent.testbed.report import fitted_figures, write_report
from agent.testbed.runner import PersonResult, SchemeResult
from agent.testbed.trace import Trace

DATA = Path(__file__).resolve().parents[1] / "data" / "rss-two-people"
RX_CORRECTION = 20.0  # as tests/testbed/test_replay.py: these phones hear far below a calibrated reference


def _slice(*carriages: str) -> Trace:
    return measurements_to_trace(m for c in carriages for m in read_measurements(DATA / f"RSS_human{c}.csv"))


@pytest.mark.parametrize("scheme", ["gaen", "ebid"])
def test_rescoring_a_pair_gives_the_decision_replay_reached(scheme: str, tmp_path: Path) -> None:
    result = replay(_slice("HH", "PP"), ReplaySettings(SchemeName(scheme), receiver_correction=RX_CORRECTION), tmp_path)
    heard = [p for p in result.pairs if p.heard]
    assert heard and any(p.notified for p in heard) and not all(p.notified for p in heard)
    for p in result.pairs:
        evidence = result.evidence[(p.receiver, p.transmitter)]
        assert bool(evidence.exposures) == (scheme == "ebid" and p.heard > 0)
        assert not (scheme == "ebid" and evidence.matches)
        whole = assess_pair(evidence, result.risk, RX_CORRECTION)
        assert best_score(whole) == pytest.approx(p.score)
        assert (whole is not None and whole.notify) == p.notified
        if whole is not None:  # what was heard up to an instant scores no more than all of it
            times = [t for t, _ in attenuations(evidence, RX_CORRECTION)]
            early = best_score(assess_pair(evidence, result.risk, RX_CORRECTION, until=times[len(times) // 2]))
            assert early <= p.score and (early < p.score or p.score == 0)


def test_the_ebid_timeline_is_drawn(tmp_path: Path) -> None:
    trace = _slice("HH")
    result = replay(trace, ReplaySettings(SchemeName.EBID, receiver_correction=RX_CORRECTION), tmp_path)
    path = tmp_path / "timeline-ebid.png"
    assert pair_timeline(trace, result, RX_CORRECTION, 2.0, path, "HH / ebid")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(trace: Trace, scheme: str, positive: str, tmp_path: Path) -> SchemeResult:
    """A test-bed run's result over ``trace``: its people, the truth and the configured decisions as
    replay gives them (no correction, as the test-bed's agents run)."""
    decided = replay(trace, ReplaySettings(SchemeName(scheme), positives=frozenset({positive})), tmp_path)
    by_name = {p.receiver: p for p in decided.pairs}
    people = tuple(
        PersonResult(
            name,
            name in by_name and by_name[name].true_contact,
            name in by_name and by_name[name].notified,
            name == positive,
        )
        for name in trace.devices
    )
    return SchemeResult(
        scheme, "slice", "measured", 1, 1.0, "", "", sum(p.true_contact for p in people),
        sum(p.notified for p in people), 0.0, 1.0, 0, 0, 0, 0.0, 0.0, people,
    )  # fmt: skip


@pytest.mark.parametrize("scheme", ["gaen", "ebid"])
def test_the_summary_shows_the_fitted_settings_next_to_the_configured(scheme: str, tmp_path: Path) -> None:
    trace = _slice("HH")
    positive, other = trace.devices
    run = _run(trace, scheme, positive, tmp_path)
    assert [p.notified for p in run.people] == [False, False]  # uncorrected, these phones are too faint
    assert run.people[1].true_contact
    # a [risk] table that counts every minute heard under 90 dB: the hand-held pair is notified
    fitted = RiskSettings(SwissCovidModel((90.0, 95.0), (1.0, 1.0, 0.0), 5.0))
    figures = fitted_figures(run, trace, fitted, 2.0, 15.0)
    assert figures.people_notified == (other,) and (figures.recall, figures.precision) == (1.0, 1.0)
    nobody = fitted_figures(run, trace, RiskSettings(), 2.0, 15.0)  # the configured ones: the run's decisions
    assert nobody.people_notified == () and nobody.recall == 0.0
    write_report([run], tmp_path / "report", {scheme: figures})
    rows = {r["person"]: r for r in csv.DictReader((tmp_path / "report" / "summary.csv").open())}
    assert (rows[other]["notified"], rows[other]["notified_fitted"]) == ("False", "True")
    assert rows[positive]["notified_fitted"] == "False"
    (summary,) = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["fitted"] == {"recall": 1.0, "precision": 1.0, "notified": 1, "people_notified": [other]}
    write_report([run], tmp_path / "plain")
    assert "fitted" not in json.loads((tmp_path / "plain" / "summary.json").read_text())[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[risk]\nmodel = 'swisscovid'\n[risk.swisscovid]\nweights = [1, 2]\n", "--fitted-risk: risk.swisscovid"),
        ("[risk\n", "--fitted-risk: "),
    ],
)
def test_sim_refuses_a_bad_fitted_risk_table_before_starting(text: str, message: str, tmp_path: Path) -> None:
    table = tmp_path / "fitted-risk.toml"
    table.write_text(text)
    out = CliRunner().invoke(cli, ["testbed", "sim", "--fitted-risk", str(table), "--report", str(tmp_path / "r")])
    assert out.exit_code == 1 and message in out.output and out.output.strip().count("\n") == 0, out.output
    assert not (tmp_path / "r").exists()  # refused before anything ran

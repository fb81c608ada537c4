"""The report of a ``testbed sim`` run: summary.json, summary.csv and, with matplotlib, summary.png."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.testbed.replay import ReplaySettings, replay
from agent.testbed.runner import SchemeResult
from agent.testbed.trace import Trace
from agent.testbed.truth import efficacy


@dataclass(frozen=True)
class FittedFigures:
    """A run's efficacy had the agents used other (fitted) risk settings: its trace replayed with them."""

    recall: float
    precision: float
    notified: int
    people_notified: tuple[str, ...]


@dataclass(frozen=True)
class SchemeReport:
    """One scheme's run with what its report adds: the fitted settings' figures, the pictures drawn."""

    result: SchemeResult
    fitted: FittedFigures | None
    pictures: tuple[Path, ...]


def scheme_report(
    run: SchemeResult,
    trace: Trace,
    fitted: RiskSettings | None,
    contact_distance_m: float,
    contact_minutes: float,
    folder: Path,
) -> SchemeReport:
    """The run's timeline (with matplotlib) and, given fitted settings, their figures on its trace."""
    figures = None if fitted is None else fitted_figures(run, trace, fitted, contact_distance_m, contact_minutes)
    return SchemeReport(run, figures, timeline(run, trace, contact_distance_m, contact_minutes, folder))


def timeline(
    run: SchemeResult, trace: Trace, contact_distance_m: float, contact_minutes: float, folder: Path
) -> tuple[Path, ...]:
    """The run's per-person picture: its trace replayed with the agents' settings (the same decisions,
    tests/testbed show it) and drawn: distance to the positive person, attenuation measured, weighted
    minutes, notification. Nothing without matplotlib."""
    from agent.testbed.plot import pair_timeline

    positives = frozenset(p.name for p in run.people if p.positive)
    settings = ReplaySettings(
        SchemeName(run.scheme), RiskSettings(), contact_distance_m, contact_minutes, 0.0, positives
    )
    path = folder / f"timeline-{run.scheme}.png"
    title = f"{run.scenario} / {run.scheme} ({run.channel} channel)"
    return (path,) if pair_timeline(trace, replay(trace, settings), 0.0, contact_distance_m, path, title) else ()


def fitted_figures(
    run: SchemeResult, trace: Trace, fitted: RiskSettings, contact_distance_m: float, contact_minutes: float
) -> FittedFigures:
    """Who ``fitted`` would have notified in this run: its trace replayed through the agent's path with
    them (replay with the configured settings gives the run's own decisions, tests/testbed show it),
    against the run's own ground truth."""
    positives = frozenset(p.name for p in run.people if p.positive)
    settings = ReplaySettings(SchemeName(run.scheme), fitted, contact_distance_m, contact_minutes, 0.0, positives)
    return _figures(run, (p.receiver for p in replay(trace, settings).pairs if p.notified))


def _figures(run: SchemeResult, notified: Iterable[str]) -> FittedFigures:
    told = frozenset(notified)
    eff = efficacy({p.name for p in run.people if p.true_contact}, set(told))
    return FittedFigures(round(eff.recall, 3), round(eff.precision, 3), eff.notified, tuple(sorted(told)))


def write_report(
    results: list[SchemeResult], folder: Path, fitted: dict[str, FittedFigures] | None = None
) -> list[Path]:
    """summary.json, summary.csv and, with matplotlib installed, summary.png. With ``fitted`` (per scheme),
    each scheme's figures under the fitted settings sit next to the configured ones: a ``fitted`` object
    in the JSON, a ``notified_fitted`` column in the CSV."""
    fitted = fitted or {}
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "summary.json", folder / "summary.csv"]
    rows = []
    for r in results:
        row = asdict(r)
        if r.scheme in fitted:
            row["fitted"] = asdict(fitted[r.scheme])
        rows.append(row)
    written[0].write_text(json.dumps(rows, indent=1))
    with written[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scheme", "person", "positive", "true_contact", "notified", "notified_fitted"])
        for r in results:
            told = fitted.get(r.scheme)
            for p in r.people:
                by_fitted = "" if told is None else p.name in told.people_notified
                w.writerow([r.scheme, p.name, p.positive, p.true_contact, p.notified, by_fitted])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [p.name for p in results[0].people]
    for row_no, r in enumerate(results):
        for col, p in enumerate(r.people):
            mark = "o" if p.true_contact else "x"
            color = "tab:red" if p.notified else "tab:grey"
            ax.scatter(col, row_no, marker=mark, color=color, s=80)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(results)), [r.scheme for r in results])
    ax.set_title("o = true close contact, x = not; red = notified")
    fig.tight_layout()
    fig.savefig(folder / "summary.png")
    written.append(folder / "summary.png")
    return written

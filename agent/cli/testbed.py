"""``proxitrace testbed sim``: the one-command demo, and the efficacy figures."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from agent.testbed.runner import SchemeResult, run_scheme, write_report
from agent.testbed.scenario import ScenarioError, load_scenario

SHIPPED_SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"  # agent/data/scenarios
DEFAULT_SCENARIO = "office-floor"


def _scenario_path(value: str) -> Path:
    """A scenario file, or the name of one shipped in hw/scenarios (``office-floor``, ``desk-testbed``)."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = SHIPPED_SCENARIOS / f"{value}.toml"
    if "/" not in value and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED_SCENARIOS.glob("*.toml")))
    raise click.BadParameter(f"{value!r} does not exist (a file, or one of: {names})", param_hint="SCENARIO")


@click.group()
def testbed() -> None:
    """Test-beds: the simulated workplace (no radios needed)."""


@testbed.command("sim")
@click.argument("scenario", default=DEFAULT_SCENARIO)
@click.option(
    "--scheme",
    "schemes",
    type=click.Choice(["dp3t", "gaen", "ebid"]),
    multiple=True,
    help="Scheme(s) to run (repeatable; default all three).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=1, max=2000),
    default=600.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--quick", is_flag=True, help="Only the last day (the CI-length variant).")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for summary.json/.csv/.png (default ./testbed-report).",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-scheme results to this JSON file.",
)
@click.option("--keep", is_flag=True, help="Keep the work folder (agents' stores and logs).")
def testbed_sim(
    scenario: str,
    schemes: tuple[str, ...],
    speed: float,
    seed: int,
    quick: bool,
    report_dir: Path | None,
    json_file: Path | None,
    keep: bool,
) -> None:
    """Play a workplace scenario with real agents on the simulated BlueZ and a real backend.

    SCENARIO is a scenario file or the name of a shipped one (default office-floor; also desk-testbed).
    """
    try:
        plan = load_scenario(_scenario_path(scenario))
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    # Ctrl-C and SIGTERM must run the clean-up below (agents, backend, bus, simulator), even when the shell
    # that started us ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="proxitrace-testbed-"))
    results: list[SchemeResult] = []
    try:
        for scheme in schemes or ("dp3t", "gaen", "ebid"):
            with click.progressbar(
                length=1000, label=f"{plan.name} / {scheme}", file=click.get_text_stream("stderr"), show_eta=False
            ) as bar:
                done = 0

                def advance(fraction: float) -> None:
                    nonlocal done
                    bar.update(int(fraction * 1000) - done)
                    done = int(fraction * 1000)

                results.append(
                    run_scheme(plan, scheme, work / scheme, speed=speed, seed=seed, quick=quick, progress=advance)
                )
    finally:
        if keep:
            click.echo(f"work folder kept: {work}", err=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(_table(results))
    written = write_report(results, report_dir or Path("testbed-report"))
    click.echo(f"report: {', '.join(str(p) for p in written)}")
    if json_file is not None:
        rows = [{k: v for k, v in asdict(r).items() if k != "people"} for r in results]
        json_file.write_text(json.dumps(rows, indent=1))


def _table(results: list[SchemeResult]) -> str:
    names = [p.name for p in results[0].people]
    lines = [f"{'person':10}" + "".join(f"{r.scheme:>18}" for r in results)]
    for i, name in enumerate(names):
        cells = []
        for r in results:
            p = r.people[i]
            truth = "positive" if p.positive else ("contact" if p.true_contact else "-")
            cells.append(f"{truth + ('/NOTIFIED' if p.notified else ''):>18}")
        lines.append(f"{name:10}" + "".join(cells))
    for r in results:
        lines.append(
            f"{r.scheme}: recall {r.recall:.2f}, precision {r.precision:.2f} ({r.true_contacts} true contacts,"
            f" {r.notified} notified); {r.address_id_violations} address/ID violations in "
            f"{r.adverts_on_air} adverts on air; {r.wall_seconds:.0f} s"
        )
    return "\n".join(lines)

"""``proxitrace testbed sim``: the one-command demo, and the efficacy figures."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.cli.context import CliContext
from agent.config import ConfigError, load_config, risk_settings
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.testbed.datasets import measurements_to_trace, read_measurements
from agent.testbed.scenario import ScenarioError, load_scenario
from agent.testbed.trace import ScanBehaviour, Trace, TraceError, format_trace, parse_trace

if TYPE_CHECKING:
    from agent.testbed.replay import ReplayResult
    from agent.testbed.report import FittedFigures, SchemeReport
    from agent.testbed.runner import SchemeResult
    from agent.testbed.sweep import SweepPoint

# The test-bed's runner, replay, report and sweep (the backend's scoring, the store, the simulator's harness)
# are imported by the commands that use them: every `python -m agent` process, each test-bed agent among
# them, loads this module, and they would add a tenth to its start-up.

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
@click.option(
    "--trace",
    "trace_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write what each receiver got as a trace (with several schemes: one file each, NAME-SCHEME.csv).",
)
@click.option(
    "--channel",
    type=click.Choice(["fitted", "ideal"]),
    default=None,
    help="Radio channel (default: the scenario's, fitted to field measurements; ideal = distance only).",
)
@click.option(
    "--fitted-risk",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A [risk] table from `testbed replay --fit` (fitted-risk.toml): the summary adds its efficacy on this run.",
)
def testbed_sim(
    scenario: str,
    schemes: tuple[str, ...],
    speed: float,
    seed: int,
    quick: bool,
    report_dir: Path | None,
    json_file: Path | None,
    keep: bool,
    trace_file: Path | None,
    channel: str | None,
    fitted_risk: Path | None,
) -> None:
    """Play a workplace scenario with real agents on the simulated BlueZ and a real backend.

    SCENARIO is a scenario file or the name of a shipped one (default office-floor; also desk-testbed).
    """
    from agent.testbed.report import scheme_report, write_report
    from agent.testbed.runner import run_scheme

    try:
        plan = load_scenario(_scenario_path(scenario))
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    fitted = _fitted_settings(fitted_risk) if fitted_risk is not None else None
    # Ctrl-C and SIGTERM must run the clean-up below (agents, backend, bus, simulator), even when the shell
    # that started us ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="proxitrace-testbed-"))
    chosen = schemes or ("dp3t", "gaen", "ebid")
    stop = threading.Event()
    done: dict[str, float] = dict.fromkeys(chosen, 0.0)

    def trace_of(scheme: str) -> Path:
        """Every run records its trace: --trace keeps it, the per-person picture is drawn from it."""
        if trace_file is None:
            return work / f"trace-{scheme}.csv"
        if len(chosen) > 1:
            return trace_file.with_name(f"{trace_file.stem}-{scheme}{trace_file.suffix or '.csv'}")
        return trace_file

    folder = report_dir or Path("testbed-report")
    folder.mkdir(parents=True, exist_ok=True)

    def one(scheme: str) -> SchemeReport:
        """A scheme's run, then its picture and fitted figures at once, while the other runs go on."""
        result = run_scheme(
            plan,
            scheme,
            work / scheme,
            speed=speed,
            seed=seed,
            quick=quick,
            progress=lambda fraction: done.__setitem__(scheme, fraction),
            trace=trace_of(scheme),
            channel=channel,
            side_by_side=len(chosen),
            stop=stop,
        )
        trace = parse_trace(trace_of(scheme).read_text())
        return scheme_report(result, trace, fitted, plan.contact_distance_m, plan.contact_minutes, folder)

    try:
        reports = _run_side_by_side(f"{plan.name} / {', '.join(chosen)}", chosen, one, done, stop)
        results = [r.result for r in reports]
        with_fitted = {r.result.scheme: r.fitted for r in reports if r.fitted is not None}
        written = write_report(results, folder, with_fitted) + [p for r in reports for p in r.pictures]
    finally:
        if keep:
            click.echo(f"work folder kept: {work}", err=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(_table(results, with_fitted, fitted_risk))
    click.echo(f"report: {', '.join(str(p) for p in written)}")
    if json_file is not None:
        rows = [{k: v for k, v in asdict(r).items() if k != "people"} for r in results]
        json_file.write_text(json.dumps(rows, indent=1))


def _run_side_by_side(
    label: str,
    chosen: tuple[str, ...],
    one: Callable[[str], SchemeReport],
    done: dict[str, float],
    stop: threading.Event,
) -> list[SchemeReport]:
    """The schemes run side by side, each on its own bus, simulator and backend: a run mostly waits for
    its accelerated clock, so three at once take little longer than one. One progress bar over all of
    them; Ctrl-C tells every run to stop and waits for their clean-up."""
    with (
        ThreadPoolExecutor(max_workers=len(chosen)) as pool,
        click.progressbar(length=1000, label=label, file=click.get_text_stream("stderr"), show_eta=False) as bar,
    ):
        futures = [pool.submit(one, scheme) for scheme in chosen]
        try:
            shown = 0
            while not all(f.done() for f in futures):
                now = int(1000 * sum(done.values()) / len(done))
                bar.update(now - shown)
                shown = now
                wait(futures, timeout=0.5)
        except KeyboardInterrupt:
            stop.set()
            wait(futures)
            raise
        return [f.result() for f in futures]


def _fitted_settings(path: Path) -> RiskSettings:
    """The risk settings of a ``[risk]`` table file, read by the agent's own config loader."""
    try:
        return risk_settings(load_config(path))
    except ConfigError as exc:
        raise click.ClickException(f"--fitted-risk: {exc}") from None


def _table(
    results: list[SchemeResult], fitted: dict[str, FittedFigures] | None = None, fitted_from: Path | None = None
) -> str:
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
        f = (fitted or {}).get(r.scheme)
        if f is not None:
            lines.append(
                f"{r.scheme} with the fitted settings ({fitted_from}): recall {f.recall:.2f}, precision "
                f"{f.precision:.2f} ({f.notified} notified: {', '.join(f.people_notified) or 'nobody'})"
            )
    return "\n".join(lines)


def _read_trace(path: Path) -> Trace:
    try:
        return parse_trace(path.read_text())
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None
    except (TraceError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@testbed.command("replay")
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheme", type=click.Choice(["gaen", "dp3t", "ebid"]), default="gaen", show_default=True)
@click.option("--contact-distance", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True)
@click.option("--contact-minutes", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True)
@click.option("--positive", "positives", multiple=True, help="Only these transmitters test positive (repeatable).")
@click.option("--rssi-correction", type=float, default=None, help="dB added to every RSSI (default: the config's).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--sweep", "do_sweep", is_flag=True, help="Vary thresholds, weights and notify minutes: PR curve.")
@click.option("--fit", "do_fit", is_flag=True, help="Propose the [risk] settings (fit on half the pairs).")
@click.option("--target-recall", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option(
    "--held-back",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --fit: fit on all of TRACE's pairs and report on this other trace (else half the pairs each).",
)
@click.pass_obj
def testbed_replay(
    obj: CliContext,
    trace_path: Path,
    scheme: str,
    contact_distance: float,
    contact_minutes: float,
    positives: tuple[str, ...],
    rssi_correction: float | None,
    json_file: Path | None,
    report_dir: Path | None,
    do_sweep: bool,
    do_fit: bool,
    target_recall: float,
    held_back: Path | None,
) -> None:
    """Score a trace through the agent's own path: per pair the decision, against the ground truth.

    TRACE is a trace file (see hw/README.md): from `testbed sim --trace`, `testbed trace-from-data`, or a
    bench capture. Risk settings come from the agent's config file.
    """
    from agent.testbed.replay import ReplayError, ReplaySettings, replay, summary

    trace = _read_trace(trace_path)
    try:
        config = load_config(obj.config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    correction = rssi_correction if rssi_correction is not None else (config.calibration.rssi_correction or 0.0)
    settings = ReplaySettings(
        SchemeName(scheme),
        risk_settings(config),
        contact_distance,
        contact_minutes,
        correction,
        frozenset(positives) if positives else None,
    )
    try:
        result = replay(trace, settings)
    except ReplayError as exc:
        raise click.ClickException(f"{trace_path}: {exc}") from None
    other: ReplayResult | None = None
    if held_back is not None:
        try:
            other = replay(_read_trace(held_back), settings)
        except ReplayError as exc:
            raise click.ClickException(f"{held_back}: {exc}") from None
    click.echo(_replay_table(result))
    folder = report_dir or Path("replay-report")
    folder.mkdir(parents=True, exist_ok=True)
    figures = summary(result)
    (folder / "replay.json").write_text(json.dumps(figures, indent=1))
    with (folder / "replay.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["receiver", "transmitter", "true_contact", "close_minutes", "notified", "score", "heard"])
        for p in result.pairs:
            w.writerow([p.receiver, p.transmitter, p.true_contact, p.close_minutes, p.notified, p.score, p.heard])
    if json_file is not None:
        json_file.write_text(json.dumps(figures, indent=1))
    from agent.testbed.plot import pair_timeline

    shown = sorted(result.pairs, key=lambda p: (p.true_contact, p.notified, p.heard), reverse=True)[:12]
    drawn = replace(result, pairs=tuple(shown))
    pair_timeline(trace, drawn, correction, contact_distance, folder / "replay.png", f"{trace_path.name} / {scheme}")
    if do_sweep or do_fit:
        _sweep_and_fit(result, other, correction, trace.scan, folder, do_fit, target_recall)
    click.echo(f"report: {folder}")


def _sweep_and_fit(
    result: ReplayResult,
    other: ReplayResult | None,
    correction: float,
    scan: ScanBehaviour,
    folder: Path,
    do_fit: bool,
    target_recall: float,
) -> None:
    from agent.testbed.plot import pr_curve
    from agent.testbed.sweep import evaluate, fit, pr_front, risk_table, split, sweep

    if other is not None:
        fit_half, held, held_evidence = list(result.pairs), list(other.pairs), other.evidence
        how = "all pairs of the trace"
    elif do_fit:
        (fit_half, held), held_evidence = split(result.pairs), result.evidence
        how = "those whose SHA-256(receiver|transmitter) starts with an even byte"
    else:
        fit_half, held, held_evidence, how = list(result.pairs), [], result.evidence, ""
    points = sweep(fit_half, result.evidence, result.risk, correction)
    front = pr_front(points)
    chosen: SweepPoint | None = fit(points, target_recall) if do_fit else None
    with (folder / "sweep.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["threshold_low_db", "threshold_high_db", "weight_mid", "notify_at", "precision", "recall", "f1"])
        for pt in points:
            c, k = pt.confusion, pt.candidate
            w.writerow(
                [*k.thresholds_db, k.weights[1], k.notify_at, round(c.precision, 3), round(c.recall, 3), round(c.f1, 3)]
            )
    drawn = pr_curve(points, front, chosen, folder / "pr-curve.png")
    click.echo(
        f"sweep: {len(points)} settings on {len(fit_half)} pairs; sweep.csv" + (", pr-curve.png" if drawn else "")
    )
    if not do_fit:
        return
    if chosen is None:
        raise click.ClickException(f"no swept setting reaches recall {target_recall:g} on the fitting half")
    on_held = evaluate(chosen.candidate, held, held_evidence, result.risk, correction)
    table = risk_table(chosen.candidate, scan.period_seconds if scan.duty_cycled else None)
    (folder / "fitted-risk.toml").write_text(table)
    click.echo(
        f"fit ({len(fit_half)} pairs, {how}): "
        f"precision {chosen.confusion.precision:.2f}, recall {chosen.confusion.recall:.2f}\n"
        f"held back ({len(held)} pairs): precision {on_held.precision:.2f}, recall {on_held.recall:.2f}, "
        f"F1 {on_held.f1:.2f}\n\n{table}"
    )


def _replay_table(result: ReplayResult) -> str:
    lines = [f"{'receiver':24} {'transmitter':24} {'close min':>9} {'score':>7}  decision"]
    for p in result.pairs:
        truth = "contact" if p.true_contact else "-"
        lines.append(
            f"{p.receiver:24} {p.transmitter:24} {p.close_minutes:9.1f} {p.score:7.1f}  {truth}"
            + ("/NOTIFIED" if p.notified else "")
        )
    c = result.confusion
    lines.append(
        f"{result.scheme}: precision {c.precision:.2f}, recall {c.recall:.2f}, F1 {c.f1:.2f}; "
        f"TP {c.true_positives} FP {c.false_positives} FN {c.false_negatives} TN {c.true_negatives}; "
        f"{result.rows} rows in {result.seconds:.1f} s"
    )
    return "\n".join(lines)


@testbed.command("trace-from-data")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def testbed_trace_from_data(files: tuple[Path, ...], output: Path) -> None:
    """Turn published measurements (RSS_human<XY>.csv, Herald <run>-A/B.csv) into one trace."""
    try:
        measurements = [m for f in files for m in read_measurements(f)]
    except TraceError as exc:
        raise click.ClickException(str(exc)) from None
    trace = measurements_to_trace(measurements)
    with output.open("w") as f:
        f.writelines(format_trace(trace))
    click.echo(f"{output}: {len(trace.rows)} rows, {len(trace.devices)} devices")


@testbed.command("fit-channel")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def testbed_fit_channel(files: tuple[Path, ...]) -> None:
    """Fit the simulator's channel to the two-people data set (RSS_human<XY>.csv files) and show how well
    it fits, per distance, on the steps it was fitted on and on the held-back ones."""
    from agent.testbed.fit_channel import fit_channel, goodness_of_fit, split

    try:
        measurements = [m for f in files for m in read_measurements(f)]
        fit_part, held = split(measurements)
        fitted = fit_channel(fit_part)
    except (TraceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"fitted on {fitted.steps} distance steps ({fitted.adverts} adverts):\n"
        f"  RSSI at 1 m, hand to hand   {fitted.rssi_at_1m_dbm:6.1f} dBm\n"
        f"  path-loss exponent          {fitted.path_loss_exponent:6.2f}\n"
        f"  pocket loss (per end)       {fitted.pocket_loss_db:6.1f} dB\n"
        f"  backpack loss (per end)     {fitted.backpack_loss_db:6.1f} dB\n"
        f"  shadowing sigma (per step)  {fitted.shadowing_sigma_db:6.1f} dB\n"
        f"  fast fading sigma (advert)  {fitted.fading_sigma_db:6.1f} dB\n"
        f"  device offset spread (RMS)  {fitted.device_sigma_db:6.1f} dB"
    )
    for name, part in (("fitted on", fit_part), ("held back", held)):
        click.echo(f"\n{name}: distance  adverts  median data/model (error)  p90 data/model (error)")
        for b in goodness_of_fit(fitted, part):
            click.echo(
                f"  {b.distance_m:5.1f} m  {b.adverts:7d}  {b.data_median:6.1f} / {b.model_median:6.1f} "
                f"({b.median_error:+5.1f})   {b.data_p90:6.1f} / {b.model_p90:6.1f} ({b.p90_error:+5.1f})"
            )


def _capture_arg(value: str) -> tuple[str, Path]:
    """``NAME=FILE`` or ``FILE`` (the receiver is then named after the file: ``ana.snoop`` -> ``ana``)."""
    name, sep, path = value.partition("=")
    return (name, Path(path)) if sep and name else (Path(value).stem, Path(value))


@testbed.command("trace-from-capture")
@click.argument("captures", nargs=-1, required=True)
@click.option(
    "--positions",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="CSV: device,x,y[,z],from,until[,model] (metres; times unix or ISO 8601).",
)
@click.option("--out", "output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def testbed_trace_from_capture(captures: tuple[str, ...], positions: Path, output: Path) -> None:
    """Turn a bench run's btmon -w captures (one per device, NAME=FILE or FILE) and its positions sheet
    into a trace; who sent an advert comes from the captures' own advertising commands."""
    from agent.testbed.bench_trace import read_captures

    named = dict(_capture_arg(c) for c in captures)
    if len(named) != len(captures):
        raise click.ClickException("two captures have the same device name: name them NAME=FILE")
    try:
        bench = read_captures(named, positions)
    except TraceError as exc:
        raise click.ClickException(str(exc)) from None
    with output.open("w") as f:
        f.writelines(format_trace(bench.trace))
    heard = sum(r.rssi is not None for r in bench.trace.rows)
    click.echo(
        f"{output}: {heard} adverts heard, {len(bench.trace.rows) - heard} ground-truth rows, "
        f"{len(bench.trace.devices)} devices; {bench.unknown_adverts} adverts from IDs no capture broadcast left out"
    )


@testbed.command("fit-calibration")
@click.argument("trace_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--reference", default=None, help="Receiver model whose correction is pinned (default: the most rows).")
@click.option("--reference-correction", type=float, default=0.0, show_default=True, help="Its correction, dB.")
@click.option(
    "--fixed-tx-power",
    type=click.IntRange(-127, 20),
    default=None,
    help="dBm every model radiates; fit only the corrections (two devices that only hear each other).",
)
@click.option(
    "--write",
    "table",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Set the fitted values in this calibration table (e.g. hw/calibration.toml).",
)
def testbed_fit_calibration(
    trace_file: Path, reference: str | None, reference_correction: float, fixed_tx_power: int | None, table: Path | None
) -> None:
    """Fit per-model TX levels and RSSI corrections from a trace whose rows name the models and distances."""
    from agent.testbed.fit_calibration import CalibrationFitError, fit_calibration, update_table

    if reference is not None and fixed_tx_power is not None:
        raise click.ClickException("--reference and --fixed-tx-power exclude each other: a fixed TX needs no reference")
    trace = _read_trace(trace_file)
    try:
        fitted = fit_calibration(trace.rows, reference, reference_correction, fixed_tx_power)
    except CalibrationFitError as exc:
        raise click.ClickException(str(exc)) from None
    anchor = (
        f"TX fixed at {fitted.fixed_tx_power:g} dBm for every model"
        if fitted.fixed_tx_power is not None
        else f"reference receiver {fitted.reference} ({fitted.reference_correction:+.1f} dB)"
    )
    click.echo(
        f"{fitted.rows} rows; path-loss exponent {fitted.path_loss_exponent:.2f}; residual {fitted.residual_db:.1f} dB "
        f"RMS; {anchor}"
    )
    for m in fitted.models:
        tx = "-" if m.tx_power is None else f"{m.tx_power:6.1f} dBm"
        correction = "-" if m.rssi_correction is None else f"{m.rssi_correction:+5.1f} dB"
        click.echo(f"  {m.model:30s} tx_power {tx:>10s}  rssi_correction {correction:>8s}  ({m.rows} rows)")
    if table is not None:
        table.write_text(update_table(table.read_text(), fitted, trace_file.name))
        click.echo(f"{table}: updated")

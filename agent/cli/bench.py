"""``proxitrace bench``: what this device sustains, runnable in the field (a Pi, a test-bed host)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from agent.bench.ingest import run_ingest_bench
from agent.bench.match import as_dict, run_match_bench
from agent.schemes.base import SchemeName


@click.group()
def bench() -> None:
    """Benchmarks of the real code paths, with synthetic data."""


@bench.command("match")
@click.option("--scheme", type=click.Choice(["gaen", "dp3t"]), default="gaen", show_default=True)
@click.option(
    "--keys",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Published keys in the synthetic list.",
)
@click.option(
    "--sightings",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Sighting windows (distinct IDs heard) on the device.",
)
@click.option(
    "--planted",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="True matches hidden in the data.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Processes to split the keys over.",
)
@click.option(
    "--days-back",
    type=click.IntRange(min=0, max=30),
    default=0,
    show_default=True,
    help="Spread keys over this many past days (DP-3T keys then expand forward to today).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_match(
    scheme: str,
    keys: int,
    sightings: int,
    planted: int,
    workers: int,
    days_back: int,
    seed: int,
    as_json: bool,
) -> None:
    """Time on-device matching of a synthetic list against synthetic sightings."""
    result = run_match_bench(SchemeName(scheme), keys, sightings, planted, workers, seed, days_back)
    if as_json:
        click.echo(json.dumps(as_dict(result)))
        return
    click.echo(
        f"{result.scheme}: {result.keys} keys against {result.sightings} sightings in {result.match_s:.2f} s "
        f"({result.keys_per_s:,.0f} keys/s, {result.workers} worker(s)); index {result.index_build_s:.2f} s; "
        f"found {result.found} of {result.planted} planted"
    )


@bench.command("ingest")
@click.option("--sightings", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option(
    "--peers",
    type=click.IntRange(min=1, max=10_000),
    default=200,
    show_default=True,
    help="Devices in range, each advertising every 250 ms.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_ingest(sightings: int, peers: int, seed: int, as_json: bool) -> None:
    """Time the store's ingest path against one-row-per-callback SQLite, in the same run."""
    result = run_ingest_bench(sightings, peers, seed)
    if as_json:
        click.echo(json.dumps(asdict(result)))
        return
    click.echo(
        f"{result.sightings} sightings from {result.peers} peers: {result.sightings_per_s:,.0f}/s "
        f"({result.ratio_vs_baseline}x one-row-per-callback at {result.baseline_rows_per_s:,.0f}/s), "
        f"{result.rows_written} rows in {result.flushes} flushes, {result.bytes_per_million / 1_048_576:.2f} MiB "
        "on disk per million sightings"
    )

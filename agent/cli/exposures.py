"""``proxitrace exposures``: what the device concluded, and why — without revealing any ID."""

from __future__ import annotations

import json

import click

from agent.cli.context import CliContext
from agent.store import ExposureRecord, Store, StoreError


@click.command()
@click.option("--explain", is_flag=True, help="Say, per day, the minutes in each attenuation bucket and why.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored results (with explanations) as JSON.")
@click.pass_obj
def exposures(obj: CliContext, explain: bool, as_json: bool) -> None:
    """Show the stored exposure results."""
    try:
        store = Store.open(obj.state_dir)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        records = store.exposures()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([_as_dict(r) for r in records], indent=1))
        return
    if not records:
        click.echo("No exposure recorded.")
        return
    notified = [r for r in records if r.notify]
    click.echo(
        f"{'EXPOSED' if notified else 'No notification'}: {len(notified)} of {len(records)} day(s) with "
        "matched contacts crossed the threshold."
    )
    for r in records:
        days = r.explanation.get("days", [])
        day = days[0] if days else {}
        click.echo(
            f"{day.get('date', r.day)}  {r.scheme.value:5}  {'NOTIFY' if r.notify else 'below':6}  "
            f"{r.explanation.get('score_name', 'score')} {r.score:g}"
            + (f" (threshold {day['threshold']:g})" if day.get("threshold") is not None else "")
        )
        if explain:
            for bucket in day.get("buckets", []):
                click.echo(
                    f"    {bucket.get('label', '?'):28} {bucket.get('minutes', 0):6.1f} min "
                    f"x {bucket.get('weight', 0):g}"
                )
            if day.get("why"):
                click.echo(f"    why: {day['why']}")
            for note in day.get("notes", []):
                click.echo(f"    note: {note}")


def _as_dict(r: ExposureRecord) -> dict[str, object]:
    return {
        "day": r.day,
        "scheme": r.scheme.value,
        "notify": r.notify,
        "score": r.score,
        "computed_at": r.computed_at,
        "explanation": r.explanation,
    }

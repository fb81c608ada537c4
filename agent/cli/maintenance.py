"""``proxitrace wipe`` (the user's right to erase) and ``proxitrace calibrate`` (this device's RSSI offset)."""

from __future__ import annotations

import asyncio

import click

from agent.calibration import CalibrationError, measure, parse_distance, record
from agent.cli.context import CliContext
from agent.clock import SystemClock
from agent.status import STATUS_FILE
from agent.store import Store, StoreError


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def wipe(obj: CliContext, yes: bool) -> None:
    """Delete every sighting, key, list record and result on this device (stop the agent first)."""
    if not yes:
        click.confirm(f"Erase all Proxitrace data in {obj.state_dir}? This cannot be undone", abort=True)
    try:
        store = Store.open(obj.state_dir)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    store.wipe()
    store.close()
    (obj.state_dir / STATUS_FILE).unlink(missing_ok=True)
    click.echo("All local data erased.")


@click.command()
@click.option("--reference-tx", type=float, required=True, help="The reference beacon's TX power, dBm.")
@click.option("--distance", default="1m", show_default=True, help="Distance to the reference, e.g. 1m or 0.5m.")
@click.option("--address", required=True, help="The reference beacon's BLE address (used only while measuring).")
@click.option("--adapter", default="hci0", show_default=True)
@click.option("--seconds", type=click.IntRange(min=5, max=600), default=60, show_default=True)
@click.option("--tx-power", type=int, default=None, help="This device's own advertised TX power to record, dBm.")
@click.pass_obj
def calibrate(
    obj: CliContext, reference_tx: float, distance: str, address: str, adapter: str, seconds: int, tx_power: int | None
) -> None:
    """Measure a reference beacon's median RSSI and write this device's RSSI correction."""
    try:
        metres = parse_distance(distance)
    except CalibrationError as exc:
        raise click.BadParameter(str(exc), param_hint="--distance") from None
    try:
        m = asyncio.run(measure(adapter, address, seconds, reference_tx, metres))
        path = record(obj.state_dir, m, tx_power, adapter, SystemClock().now())
    except CalibrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"median RSSI {m.median_rssi:.1f} dBm over {m.samples} samples; expected "
        f"{m.expected_rssi:.1f}: RSSI correction {m.rssi_correction:+.1f} dB written to {path}"
    )

"""``proxitrace wipe`` (the user's right to erase) and ``proxitrace calibrate`` (this device's RSSI offset)."""

from __future__ import annotations

import asyncio
import math
import statistics

import click

from agent.calibration import adapter_model_keys, load_table, read_local, resolve, write_local
from agent.cli.context import CliContext
from agent.clock import SystemClock
from agent.status import STATUS_FILE
from agent.store import Store, StoreError

FREE_SPACE_LOSS_1M_DB = 41.0  # 2.4 GHz, isotropic antennas


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


def expected_rssi(reference_tx: float, distance_m: float) -> float:
    """What a calibrated receiver reads from the reference: its TX power less log-distance free-space loss."""
    return reference_tx - FREE_SPACE_LOSS_1M_DB - 20 * math.log10(distance_m)


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
        metres = float(distance.lower().removesuffix("m"))
    except ValueError:
        raise click.BadParameter(f"{distance!r} is not a distance like 1m", param_hint="--distance") from None
    if metres <= 0:
        raise click.BadParameter("must be positive", param_hint="--distance")
    samples = asyncio.run(_sample(adapter, address.upper(), seconds))
    if len(samples) < 10:
        raise click.ClickException(
            f"heard the reference only {len(samples)} times in {seconds} s; move it closer or check the address"
        )
    median = statistics.median(samples)
    correction = expected_rssi(reference_tx, metres) - median
    own_tx = (
        tx_power
        if tx_power is not None
        else resolve(load_table(), adapter_model_keys(adapter), read_local(obj.state_dir)).tx_power
    )
    path = write_local(obj.state_dir, own_tx, correction, SystemClock().now(), len(samples))
    click.echo(
        f"median RSSI {median:.1f} dBm over {len(samples)} samples; expected "
        f"{expected_rssi(reference_tx, metres):.1f}: RSSI correction {correction:+.1f} dB written to {path}"
    )


async def _sample(adapter: str, address: str, seconds: int) -> list[int]:
    from bleak import BleakScanner

    samples: list[int] = []

    def seen(device, adv) -> None:  # type: ignore[no-untyped-def]
        if device.address.upper() == address and adv.rssi is not None and -127 < adv.rssi < 20:
            samples.append(adv.rssi)

    async with BleakScanner(seen, bluez={"adapter": adapter, "filters": {"DuplicateData": True}}):
        await asyncio.sleep(seconds)
    return samples

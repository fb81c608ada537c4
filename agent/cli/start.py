"""``proxitrace start``: the one command a newcomer runs — the agent on real radios, or the simulation."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.run import run
from agent.cli.testbed import testbed_sim

SYSFS_BLUETOOTH = Path("/sys/class/bluetooth")


def local_adapters(sysfs: Path = SYSFS_BLUETOOTH) -> list[str]:
    """Controllers the kernel knows (hciN), without needing D-Bus or bluetoothd."""
    if not sysfs.is_dir():
        return []
    return sorted(p.name for p in sysfs.iterdir() if p.name.startswith("hci") and ":" not in p.name)


@click.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Run the agent on this machine's Bluetooth adapter; with no radio, run the simulated test-bed."""
    adapters = local_adapters()
    if not adapters:
        click.echo(
            "No Bluetooth adapter here: running the simulated workplace test-bed (proxitrace testbed sim).", err=True
        )
        ctx.invoke(testbed_sim, schemes=("dp3t", "gaen", "ebid"), quick=True)
        return
    click.echo(f"Bluetooth adapter(s): {', '.join(adapters)}: running the agent (proxitrace run).", err=True)
    ctx.invoke(run)

"""``proxitrace start``: the one command a newcomer runs — the agent on real radios, or the simulation."""

from __future__ import annotations

from pathlib import Path

import click

SYSFS_BLUETOOTH = Path("/sys/class/bluetooth")


def local_adapters(sysfs: Path = SYSFS_BLUETOOTH) -> list[str]:
    """Controllers the kernel knows (hciN), without needing D-Bus or bluetoothd."""
    if not sysfs.is_dir():
        return []
    return sorted(p.name for p in sysfs.iterdir() if p.name.startswith("hci") and ":" not in p.name)


@click.command()
def start() -> None:
    """Run the agent on this machine's Bluetooth adapter; with no radio, run the simulated test-bed."""
    adapters = local_adapters()
    if not adapters:
        raise click.ClickException(
            "no Bluetooth adapter found (/sys/class/bluetooth is empty); the simulated test-bed "
            "(proxitrace testbed sim) is not in this build yet"
        )
    raise click.ClickException(f"found {', '.join(adapters)}, but the daemon (proxitrace run) is not in this build yet")

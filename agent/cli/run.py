"""``proxitrace run`` and ``proxitrace status``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import asdict

import click

from agent.cli.context import CliContext, lab_warning
from agent.clock import SystemClock, clock_from_spec
from agent.config import ConfigError, load_config
from agent.status import brief_status, read_status, render_status
from agent.store import StoreError, StoreUnusable

# sysexits EX_CONFIG: the state directory cannot hold the database; the unit's RestartPreventExitStatus
# stops systemd from restarting into the same failure every 10 s (systemd/README.md)
EXIT_STATE_DIR_UNUSABLE = 78


@click.command()
@click.option("--adapter", default=None, help="Advertise and scan on this adapter only (e.g. hci1).")
@click.option(
    "--clock",
    "clock_spec",
    default=None,
    envvar="PROXITRACE_CLOCK",
    help="Time source: system (default) or accelerated:START:SPEED[:ORIGIN] (test-beds).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
@click.pass_obj
def run(obj: CliContext, adapter: str | None, clock_spec: str | None, log_level: str) -> None:
    """Run the agent: advertise, scan, store, match (the systemd service runs this)."""
    from agent.daemon import Daemon

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(obj.config_path)
        clock = clock_from_spec(clock_spec or config.agent.clock)
        daemon = Daemon(config, obj.state_dir, clock, adapter=adapter)
    except StoreUnusable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_STATE_DIR_UNUSABLE)
    except (ConfigError, StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(daemon.run())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@click.option(
    "--brief",
    is_flag=True,
    help="One line of key=value fields (state ok/exposed/report-pending/needs-attention and why); "
    "exit 1 when attention is needed, 3 when the agent is not running.",
)
@click.pass_obj
def status(obj: CliContext, as_json: bool, brief: bool) -> None:
    """Is the agent working? Adapters, advertising, what it hears, the store, sync and exposure."""
    if as_json and brief:
        raise click.UsageError("--json and --brief: choose one")
    warning = lab_warning(obj)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    snapshot = read_status(obj.state_dir)
    if brief:
        short = brief_status(snapshot, SystemClock().now(), snapshot is not None and _pid_alive(snapshot.pid))
        click.echo(short.line)
        sys.exit(short.exit_code)
    if snapshot is None:
        raise click.ClickException(f"no status in {obj.state_dir}: is the agent running with this state dir?")
    alive = _pid_alive(snapshot.pid)
    if as_json:
        click.echo(json.dumps({**asdict(snapshot), "running": alive}, indent=1))
    else:
        click.echo(render_status(snapshot, SystemClock().now(), alive))
    sys.exit(0 if alive else 3)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

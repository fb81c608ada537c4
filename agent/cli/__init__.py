"""The ``proxitrace`` command line: thin click wrappers around the library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent import __version__
from agent.cli.backend import backend
from agent.cli.bench import bench
from agent.cli.config import config_group
from agent.cli.context import CliContext
from agent.cli.doctor import doctor
from agent.cli.exposures import exposures
from agent.cli.ids import advert, ids
from agent.cli.maintenance import calibrate, wipe
from agent.cli.match import match
from agent.cli.provision import provision_command
from agent.cli.run import run, status
from agent.cli.start import start
from agent.cli.sync import register, report, status_check, sync
from agent.cli.testbed import testbed
from agent.paths import STATE_DIR_ENV, default_state_dir


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="proxitrace")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML config file (default /etc/proxitrace/config.toml when it exists).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=STATE_DIR_ENV,
    default=None,
    help=f"Where keys and sightings live (env {STATE_DIR_ENV}; default /var/lib/proxitrace as root, "
    "else the XDG data dir).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, state_dir: Path | None) -> None:
    """Proxitrace: a BLE contact-tracing agent (DP-3T, GAEN, PEPP-PT/ROBERT EBIDs)."""
    ctx.obj = CliContext(config_path=config_path, state_dir=state_dir or default_state_dir())


def main() -> None:
    """Run the CLI; usage errors become one line on stderr and exit 2, never a traceback."""
    try:
        code = cli.main(prog_name="proxitrace", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("proxitrace: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        where = f"{exc.ctx.command_path}: " if isinstance(exc, click.UsageError) and exc.ctx else "proxitrace: "
        click.echo(f"{where}{exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


cli.add_command(start)
cli.add_command(run)
cli.add_command(status)
cli.add_command(exposures)
cli.add_command(match)
cli.add_command(wipe)
cli.add_command(config_group)
cli.add_command(testbed)
cli.add_command(calibrate)
cli.add_command(doctor)
cli.add_command(ids)
cli.add_command(advert)
cli.add_command(bench)
cli.add_command(backend)
cli.add_command(sync)
cli.add_command(register)
cli.add_command(provision_command)
cli.add_command(report)
cli.add_command(status_check)

"""The ``proxitrace`` command line: thin click wrappers around the library."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from agent import __version__
from agent.cli.context import CliContext
from agent.paths import STATE_DIR_ENV, default_state_dir

_COMMANDS = {
    "advert": ("agent.cli.ids", "advert"),
    "backend": ("agent.cli.backend", "backend"),
    "bench": ("agent.cli.bench", "bench"),
    "calibrate": ("agent.cli.maintenance", "calibrate"),
    "config": ("agent.cli.config", "config_group"),
    "doctor": ("agent.cli.doctor", "doctor"),
    "exposures": ("agent.cli.exposures", "exposures"),
    "ids": ("agent.cli.ids", "ids"),
    "match": ("agent.cli.match", "match"),
    "provision": ("agent.cli.provision", "provision_command"),
    "register": ("agent.cli.sync", "register"),
    "report": ("agent.cli.sync", "report"),
    "run": ("agent.cli.run", "run"),
    "start": ("agent.cli.start", "start"),
    "status": ("agent.cli.run", "status"),
    "status-check": ("agent.cli.sync", "status_check"),
    "sync": ("agent.cli.sync", "sync"),
    "testbed": ("agent.cli.testbed", "testbed"),
    "wipe": ("agent.cli.maintenance", "wipe"),
}
"""Each command's module, imported only when that command runs: ``proxitrace run`` (a daemon living for
months) then never holds the backend, the test-bed or the benchmarks in memory (issue 17's RSS)."""


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        home = _COMMANDS.get(cmd_name)
        if home is None:
            return None
        command = getattr(importlib.import_module(home[0]), home[1])
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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

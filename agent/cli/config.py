"""``proxitrace config show``: the configuration in force, so an operator can see what the agent runs with."""

from __future__ import annotations

import click

from agent.cli.context import CliContext
from agent.config import DEFAULT_CONFIG_PATH, ConfigError, config_to_toml, load_config


@click.group("config")
def config_group() -> None:
    """The agent's configuration file (systemd/config.example.toml documents every key)."""


@config_group.command("show")
@click.pass_obj
def show(obj: CliContext) -> None:
    """Print the configuration in force as TOML: the file's values, defaults for the rest."""
    path = obj.config_path or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"# {'from ' + str(path) if path else 'no config file: all defaults'}")
    click.echo(config_to_toml(config), nl=False)

"""What every command gets from the ``proxitrace`` group's global options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config import ConfigError, insecure_transport_warning, load_config


@dataclass(frozen=True)
class CliContext:
    config_path: Path | None
    state_dir: Path


def lab_warning(obj: CliContext) -> str | None:
    """The plain-http lab warning for ``status`` and ``doctor``; None also when the config does not load
    (those commands report on the machine, the config's own errors come from the commands that use it)."""
    try:
        return insecure_transport_warning(load_config(obj.config_path))
    except ConfigError:
        return None

"""What every command gets from the ``proxitrace`` group's global options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CliContext:
    config_path: Path | None
    state_dir: Path

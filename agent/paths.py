"""Where an agent keeps its state, so several agents can share a host and tests never touch a real one."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "PROXITRACE_STATE_DIR"
SYSTEM_STATE_DIR = Path("/var/lib/proxitrace")


def default_state_dir(environ: dict[str, str] | None = None, euid: int | None = None) -> Path:
    """$PROXITRACE_STATE_DIR, else /var/lib/proxitrace for root, else $XDG_DATA_HOME/proxitrace."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    if (os.geteuid() if euid is None else euid) == 0:
        return SYSTEM_STATE_DIR
    xdg = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(xdg) / "proxitrace"


def ensure_private_dir(path: Path) -> Path:
    """Create the directory 0700 (with a umask, so it is never briefly world-readable)."""
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    return path

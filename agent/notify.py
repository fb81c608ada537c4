"""Telling a user without a screen that they were exposed: a configurable hook command.

A wearable has no display; the operator decides what "notify" means on it (blink an LED, buzz, send to a
paired phone). The daemon runs the hook with a timeout and hands it only what it needs to choose a
pattern — never an ID, a key or a time of contact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookResult:
    ran: bool
    returncode: int | None
    timed_out: bool = False
    error: str | None = None


async def run_hook(
    command: str, event: str, days_exposed: int, timeout: float = 30.0, facts: Mapping[str, str] | None = None
) -> HookResult:
    """Run ``command`` with PROXITRACE_EVENT/PROXITRACE_DAYS_EXPOSED set, and ``facts`` (the ``status
    --brief`` fields as PROXITRACE_* variables: state, why, advertising, ...) beside them; never raises."""
    if not command.strip():
        return HookResult(ran=False, returncode=None)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        log.error("notification hook is not a valid command line: %s", exc)
        return HookResult(ran=False, returncode=None, error=str(exc))
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PROXITRACE_EVENT": event,
        "PROXITRACE_DAYS_EXPOSED": str(days_exposed),
    }
    env.update({k: v for k, v in (facts or {}).items() if k.startswith("PROXITRACE_") and k not in env})
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        log.error("notification hook %s could not start: %s", argv[0], exc.strerror)
        return HookResult(ran=False, returncode=None, error=exc.strerror)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("notification hook %s timed out after %.0f s and was killed", argv[0], timeout)
        return HookResult(ran=True, returncode=proc.returncode, timed_out=True)
    if proc.returncode != 0:
        log.error(
            "notification hook %s exited %d: %s",
            argv[0],
            proc.returncode,
            stderr.decode(errors="replace").strip()[:200],
        )
    return HookResult(ran=True, returncode=proc.returncode)

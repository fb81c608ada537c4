"""How late the event loop runs a callback while something else is in progress: what anything else on
the loop (the radio's D-Bus signals, the flusher, the status file) would wait for."""

from __future__ import annotations

import asyncio
import time

TICK_SECONDS = 0.005


class LoopWatch:
    """How late a callback asked for every ``TICK_SECONDS`` runs, at worst, while the ``with`` lasts."""

    def __init__(self) -> None:
        self.ticks = 0
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            self.worst = max(self.worst, time.monotonic() - due)
            self.ticks += 1

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

"""Keeps the daemon's long-running tasks alive: a task that dies is logged, counted and restarted.

A field agent runs for months with nobody watching; one failing part (a sync against a dead backend, a
scanner whose adapter vanished) must never take the others down, nor fail silently. Restarts back off
exponentially per task and reset after a task has run for a while.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.backoff import backoff_delay
from agent.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskHealth:
    name: str
    running: bool
    restarts: int
    last_error: str | None
    last_error_at: float | None


@dataclass
class _Slot:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    done: bool = False


class Supervisor:
    def __init__(
        self,
        clock: Clock,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        healthy_after: float = 600.0,
    ) -> None:
        self._clock = clock
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._healthy_after = healthy_after
        self._slots: dict[str, _Slot] = {}
        self._runners: list[asyncio.Task[None]] = []

    def add(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        if name in self._slots:
            raise ValueError(f"task {name!r} already supervised")
        self._slots[name] = _Slot(name, factory)

    def start(self) -> None:
        for slot in self._slots.values():
            self._runners.append(asyncio.create_task(self._keep_alive(slot), name=f"supervise:{slot.name}"))

    async def _keep_alive(self, slot: _Slot) -> None:
        failures = 0
        while True:
            started = self._clock.now()
            slot.task = asyncio.create_task(_as_coroutine(slot.factory), name=slot.name)
            try:
                await slot.task
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise
                slot.last_error, slot.last_error_at = "cancelled", self._clock.now()
                log.error("task %s was cancelled from outside; restarting", slot.name)
            except Exception as exc:
                slot.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
                slot.last_error_at = self._clock.now()
                log.error(
                    "task %s died (%s); restart %d in %.0f s",
                    slot.name,
                    exc.__class__.__name__,
                    slot.restarts + 1,
                    self._delay(failures + 1),
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            else:
                slot.done = True
                log.info("task %s finished", slot.name)
                return
            failures = 1 if self._clock.now() - started >= self._healthy_after else failures + 1
            await self._clock.sleep(self._delay(failures))
            slot.restarts += 1

    def _delay(self, failures: int) -> float:
        return backoff_delay(failures, self._backoff_initial, self._backoff_max)

    def health(self) -> tuple[TaskHealth, ...]:
        return tuple(
            TaskHealth(s.name, s.task is not None and not s.task.done(), s.restarts, s.last_error, s.last_error_at)
            for s in self._slots.values()
        )

    async def stop(self) -> None:
        for runner in self._runners:
            runner.cancel()
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        await asyncio.gather(*(s.task for s in self._slots.values() if s.task), return_exceptions=True)
        self._runners.clear()


async def _as_coroutine(factory: Callable[[], Awaitable[None]]) -> None:
    await factory()

"""Waiting on several things at once, with timeouts measured by an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from agent.clock import Clock

_T = TypeVar("_T")


async def first(**waits: Coroutine[Any, Any, Any]) -> str:
    """Run the coroutines until one finishes; return its name (its exception, if any, is raised)."""
    tasks = {name: asyncio.ensure_future(c) for name, c in waits.items()}
    try:
        done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    for name, task in tasks.items():
        if task in done:
            task.result()
            return name
    raise AssertionError("asyncio.wait returned without a finished task")


async def within(clock: Clock, seconds: float, awaitable: Awaitable[_T]) -> _T:
    """``awaitable``'s result, or TimeoutError once ``seconds`` of ``clock`` time have passed."""
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if not work.done() or work.cancelled():
        raise TimeoutError(f"no answer within {seconds:g} s")
    return work.result()

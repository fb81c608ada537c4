"""Waiting in tests for what a real process, bus or thread does in its own time: poll a condition until a
deadline. The deadline only bounds a failure (a loaded CI machine may be slow); a passing test waits just
as long as the condition takes.

``until`` answers whether the condition came true, for ``assert await until(...), "what never happened"``;
``eventually`` fails the test itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(check: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Whether ``check()`` holds within ``timeout`` seconds (tried once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return check()


async def eventually(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> None:
    """Poll a condition (sync or async) until it holds; fail with the timeout otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)

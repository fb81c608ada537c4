import asyncio

import pytest

from agent.clock import AcceleratedClock, ManualClock, SystemClock, clock_from_spec


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock(start=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper("b", 20)), asyncio.create_task(sleeper("a", 10))]
    await asyncio.sleep(0)
    await clock.advance(5)
    assert woke == []
    await clock.advance(30)
    await asyncio.gather(*tasks)
    assert woke == [("a", 1010.0), ("b", 1020.0)]
    assert clock.now() == 1035.0


async def test_accelerated_clock_runs_faster_and_is_shareable() -> None:
    clock = AcceleratedClock(start=5_000.0, speed=1000.0)
    t0 = clock.now()
    await clock.sleep(50)  # 50 simulated seconds = 50 ms real
    assert clock.now() - t0 >= 50
    other = clock_from_spec(clock.spec())
    assert abs(other.now() - clock.now()) < 5


def test_clock_specs() -> None:
    assert isinstance(clock_from_spec(None), SystemClock)
    assert isinstance(clock_from_spec("system"), SystemClock)
    with pytest.raises(ValueError, match="unknown clock kind"):
        clock_from_spec("sundial:1")
    with pytest.raises(ValueError, match="bad clock spec"):
        clock_from_spec("accelerated:1")
    with pytest.raises(ValueError, match="positive"):
        AcceleratedClock(0, speed=0)

import asyncio
import socket
from pathlib import Path

from agent.clock import ManualClock
from agent.sdnotify import Notifier
from agent.supervisor import Supervisor


async def test_a_dying_task_is_restarted_with_backoff_and_reported() -> None:
    clock = ManualClock(1000.0)
    runs: list[float] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(clock.now())
        if len(runs) <= 3:
            raise RuntimeError("adapter gone")
        steady.set()
        await asyncio.Event().wait()

    async def healthy() -> None:
        await asyncio.Event().wait()

    sup = Supervisor(clock, backoff_initial=2, backoff_max=5)
    sup.add("scanner", flaky)
    sup.add("sync", healthy)
    sup.start()
    for _ in range(12):
        await clock.advance(1)
    await asyncio.wait_for(steady.wait(), 1)
    assert [t - 1000 for t in runs] == [0, 2, 6, 11]  # backoff 2, 4, then capped at 5
    health = {h.name: h for h in sup.health()}
    assert health["scanner"].restarts == 3 and health["scanner"].running
    assert health["scanner"].last_error == "RuntimeError: adapter gone"
    assert health["sync"].restarts == 0 and health["sync"].running
    await sup.stop()
    assert not any(h.running for h in sup.health())


async def test_a_task_that_returns_is_not_restarted() -> None:
    clock = ManualClock()
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    sup = Supervisor(clock)
    sup.add("once", once)
    sup.start()
    await clock.advance(100)
    assert calls == 1
    await sup.stop()


def test_notifier_sends_datagrams_to_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000"})
        assert n.enabled and n.watchdog_interval == 10.0
        assert n.ready("advertising")
        assert server.recv(100) == b"READY=1\nSTATUS=advertising"
        assert n.watchdog()
        assert server.recv(100) == b"WATCHDOG=1"


def test_notifier_is_a_no_op_outside_systemd() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready() is False
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"}).watchdog_interval is None

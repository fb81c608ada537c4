"""The D-Bus calls outside the advertiser and the scanner have timeouts too: the ObjectManager listing of
bluetoothd's adapters and the bus daemon's own calls (authentication and Hello at connect, AddMatch,
GetNameOwner). A request that is never answered must end in a retry, not in an agent that waits for ever
with no adapters, or on a connection nobody answers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from support.bletools import AgentThread, gaen_scheme
from support.polling import eventually

from agent.ble.bluez_watch import BluezWatch, BusLost
from agent.ble.edge import BleEdge, BleSettings
from agent.ble.names import GET_MANAGED_OBJECTS
from agent.clock import SystemClock
from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
CONFIG = {"tick_seconds": 0.1, "adapters": [{"name": "hci0", "adv_interval_ms": 100}, {"name": "hci1", "x": 2.0}]}
CALL_TIMEOUT_S = 1.0
RECOVERY_S = 30.0


def start_agent() -> AgentThread:
    clock = SystemClock()
    settings = BleSettings(advertise_adapter="hci0", scan_adapters=("hci0",), call_timeout_s=CALL_TIMEOUT_S)
    return AgentThread(lambda sink: BleEdge(settings, gaen_scheme(clock.now()), sink, clock)).start()


async def hears_and_advertises(agent: AgentThread, ctl: SimControl) -> None:
    await eventually(lambda: len(agent.sightings) > 2, timeout=RECOVERY_S)
    await eventually(lambda: agent.health().advertiser.advertising, timeout=RECOVERY_S)  # type: ignore[union-attr]
    assert (await ctl.adapter_stats("hci0"))["advertising"]


@contextmanager
def bus_daemon_stopped(bed: SimBed) -> Iterator[None]:
    """The real dbus-daemon frozen (SIGSTOP): connections are accepted by the kernel, nothing is answered."""
    pid = bed.bus.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_lost_get_managed_objects_is_asked_again_and_the_agent_starts(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): b"\x0a" * 20}, x=1.0)
    await ctl.drop_next(GET_MANAGED_OBJECTS)  # the agent's first listing of the adapters is never answered
    began = time.monotonic()
    agent = start_agent()
    try:
        await hears_and_advertises(agent, ctl)
        took = time.monotonic() - began
        health = agent.health()
        stats = await ctl.stats()
    finally:
        agent.stop()
        ctl.close()
    assert stats["dropped_calls"] == 1
    assert health.last_error == f"{GET_MANAGED_OBJECTS}: no answer within {CALL_TIMEOUT_S:g} s"
    assert health.connections == 1  # bluetoothd's fault, not the bus's: asked again on the same connection
    assert took < RECOVERY_S


async def test_add_match_on_a_frozen_bus_daemon_times_out_as_a_lost_bus(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    bus = await MessageBus(bus_address=bed.bus_address, bus_type=BusType.SYSTEM).connect()
    watch = BluezWatch(bus, SystemClock(), call_timeout_s=0.5)
    try:
        with bus_daemon_stopped(bed):
            began = time.monotonic()
            with pytest.raises(BusLost, match=r"did not answer AddMatch within 0\.5 s"):
                await asyncio.wait_for(watch.start(), 5.0)  # the outer bound only keeps a broken test short
            took = time.monotonic() - began
    finally:
        watch.close()
        bus.disconnect()
    assert 0.4 < took < 2.0


async def test_an_agent_started_on_a_frozen_bus_daemon_retries_and_starts_when_it_answers(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): b"\x0b" * 20}, x=1.0)
    with bus_daemon_stopped(bed):
        agent = start_agent()
        await asyncio.sleep(4 * CALL_TIMEOUT_S)
        during = agent.health()
    try:
        await hears_and_advertises(agent, ctl)
        after = agent.health()
    finally:
        agent.stop()
        ctl.close()
    assert during.last_error is not None and during.last_error.startswith("TimeoutError")  # gave up, retried
    assert during.connections == 0
    assert after.connections == 1

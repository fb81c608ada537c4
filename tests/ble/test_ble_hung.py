"""bluetoothd hung: alive on the bus, owning ``org.bluez``, answering nothing. Every BlueZ call the agent makes has
a timeout, the scanner's silence watchdog fires and escalates (restart, then power cycle) as after a restart, no
loop is left waiting for ever, and when bluetoothd answers again — or is restarted, as systemd would — the agent
advertises and hears again without a restart of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from support.bletools import AgentThread, gaen_scheme
from support.polling import eventually

from agent.ble.edge import BleEdge, BleSettings
from agent.clock import SystemClock
from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
CONFIG = {"tick_seconds": 0.1, "adapters": [{"name": "hci0", "adv_interval_ms": 100}, {"name": "hci1", "x": 2.0}]}
WATCHDOG_S = 2.0
CALL_TIMEOUT_S = 1.0
HANG_S = 12.0
RECOVERY_S = 30.0


def start_agent() -> AgentThread:
    clock = SystemClock()
    settings = BleSettings(
        advertise_adapter="hci0", scan_adapters=("hci0",), watchdog_s=WATCHDOG_S, call_timeout_s=CALL_TIMEOUT_S
    )
    return AgentThread(lambda sink: BleEdge(settings, gaen_scheme(clock.now()), sink, clock)).start()


async def heard_again(agent: AgentThread, ctl: SimControl) -> float:
    began, before = time.monotonic(), len(agent.sightings)
    await eventually(lambda: len(agent.sightings) > before + 2, timeout=RECOVERY_S)
    await eventually(lambda: agent.health().advertiser.advertising, timeout=RECOVERY_S)  # type: ignore[union-attr]
    assert (await ctl.adapter_stats("hci0"))["advertising"]  # on air, as the simulator sees it
    return time.monotonic() - began


async def hang_for(ctl: SimControl, agent: AgentThread, seconds: float) -> None:
    await ctl.hang()
    before = agent.health().scanners[0]
    await asyncio.sleep(seconds)
    during = agent.health().scanners[0]
    assert during.watchdog_restarts > before.watchdog_restarts  # silence noticed
    assert during.failures > before.failures  # and restarting timed out instead of waiting for ever
    assert during.last_error is not None and "TimeoutError" in during.last_error
    assert not during.scanning


async def test_a_hung_bluetoothd_is_waited_out_with_timeouts_and_the_agent_recovers(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): b"\x07" * 20}, x=1.0)
    agent = start_agent()
    try:
        await heard_again(agent, ctl)
        await hang_for(ctl, agent, HANG_S)
        await ctl.resume()  # the blocking call returns; the queued calls are answered late
        took = await heard_again(agent, ctl)
        health = agent.health()
    finally:
        agent.stop()
        ctl.close()
    assert took < RECOVERY_S
    assert health.connections == 1  # the bus connection itself was never the problem
    assert health.scanners[0].scanning


async def test_a_hung_bluetoothd_restarted_by_systemd_is_picked_up(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): b"\x08" * 20}, x=1.0)
    agent = start_agent()
    try:
        await heard_again(agent, ctl)
        await hang_for(ctl, agent, WATCHDOG_S * 3)
        ctl.close()
        bed.sim.restart(kill=True, down_seconds=0.5)  # WatchdogSec / an operator: SIGKILL and start again
        ctl = await SimControl.connect(bed.bus_address)
        await ctl.add_beacon({uuid128(0xFD6F): b"\x09" * 20}, x=1.0)
        took = await heard_again(agent, ctl)
        health = agent.health()
    finally:
        agent.stop()
        ctl.close()
    assert took < RECOVERY_S
    assert health.bluez_generation == 2

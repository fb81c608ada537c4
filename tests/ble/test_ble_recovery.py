"""Recovery: bluetoothd restarted (cleanly and by SIGKILL) five times, an adapter unplugged and plugged back,
the bus itself restarted. After each, the agent advertises and scans again within 30 s, and nothing it had
already handed to the store is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from support.bletools import AgentThread, gaen_scheme
from support.polling import eventually

from agent.ble.edge import BleEdge, BleSettings
from agent.clock import SystemClock
from agent.schemes.base import uuid128
from agent.sightings import RawSighting
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
RECOVERY_S = 30.0
CONFIG = {
    "tick_seconds": 0.1,
    "adapters": [{"name": "hci0", "legacy": True, "adv_interval_ms": 100}, {"name": "hci1", "x": 3.0}],
}


class Observer:
    """Checks, from outside the agent, that it advertises and scans, and that its sink only ever grows."""

    def __init__(self, bed: SimBed, agent: AgentThread) -> None:
        self.bed = bed
        self.agent = agent
        self.kept: list[RawSighting] = []

    async def recovered(self, label: str) -> float:
        began = time.monotonic()
        ctl = await SimControl.connect(self.bed.bus_address)
        try:
            await ctl.add_beacon({uuid128(0xFD6F): bytes([len(self.kept) % 256]) * 20}, x=1.0)
            heard = len(self.agent.sightings)
            await eventually(lambda: _advertising(ctl), timeout=RECOVERY_S)
            await eventually(lambda: len(self.agent.sightings) > heard + 2, timeout=RECOVERY_S)
        finally:
            ctl.close()
        took = time.monotonic() - began
        assert took < RECOVERY_S, label
        assert self.agent.sightings[: len(self.kept)] == self.kept  # nothing taken before was lost
        self.kept = list(self.agent.sightings)
        return took


async def _advertising(ctl: SimControl) -> bool:
    return bool((await ctl.adapter_stats("hci0"))["advertising"])


async def test_agent_recovers_from_bluez_restarts_and_a_replugged_adapter(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    clock = SystemClock()
    scheme = gaen_scheme(clock.now())
    agent = AgentThread(
        lambda sink: BleEdge(BleSettings(advertise_adapter="hci0", scan_adapters=("hci0",)), scheme, sink, clock)
    ).start()
    watch = Observer(bed, agent)
    try:
        await watch.recovered("start")
        for n in range(5):
            bed.sim.restart(kill=n % 2 == 1, down_seconds=0.5)  # systemctl restart / a crash
            await watch.recovered(f"restart {n}")
        ctl = await SimControl.connect(bed.bus_address)
        await ctl.remove_adapter("hci0")
        await asyncio.sleep(1.0)
        await ctl.add_adapter("hci0")
        ctl.close()
        await watch.recovered("replug")
        health = agent.health()
    finally:
        agent.stop()
    assert agent.health().scanners[0].sightings == len(agent.sightings)
    assert health.bluez_generation == 6 and health.connections == 1
    assert health.advertiser is not None and health.advertiser.advertising
    assert health.scanners[0].restarts >= 6
    assert bed.air_summary().restarts == 5


async def test_agent_reconnects_when_the_bus_itself_restarts(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    clock = SystemClock()
    agent = AgentThread(
        lambda sink: BleEdge(
            BleSettings(advertise_adapter="hci0", scan_adapters=("hci0",)), gaen_scheme(clock.now()), sink, clock
        )
    ).start()
    watch = Observer(bed, agent)
    try:
        await watch.recovered("start")
        bed.sim.kill()
        bed.bus.kill()
        bed.bus.stop()
        await asyncio.sleep(0.5)
        bed.bus.start()
        bed.sim.start()
        await watch.recovered("bus restart")
        health = agent.health()
    finally:
        agent.stop()
    assert health.connections == 2

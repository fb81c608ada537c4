"""A legacy controller (the Pi's) that advertises and scans: the pause around each rotation is what keeps
advertising on; without it the new advertisement is accepted by BlueZ and silently never goes on air."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from support.bletools import gaen_scheme
from support.polling import eventually

from agent.ble.advertiser import Advertiser
from agent.ble.bluez_watch import BluezWatch
from agent.ble.scanner import Scanner
from agent.clock import ManualClock, SystemClock
from agent.schemes.base import uuid128
from agent.schemes.gaen import INTERVAL_SECONDS
from agent.sightings import RawSighting
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
CONFIG: dict[str, Any] = {
    "tick_seconds": 0.05,
    "adapters": [{"name": "hci0", "legacy": True, "adv_interval_ms": 100}, {"name": "hci1", "x": 2.0}],
}
ROTATIONS = 4


async def run_rotations(bed: SimBed, pause: bool) -> tuple[list[dict[str, Any]], Advertiser, list[RawSighting]]:
    """Advertise and scan on hci0 through ROTATIONS ID boundaries; the simulator's view after each."""
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): bytes(20)}, x=1.0)  # something for the scanner to hear
    start = 1_800_000_000.0 - 1_800_000_000.0 % INTERVAL_SECONDS + INTERVAL_SECONDS - 5
    clock = ManualClock(start)
    got: list[RawSighting] = []
    scanner = Scanner(["hci0"], got.append, SystemClock())
    adv = Advertiser("hci0", gaen_scheme(start), -8, clock, pauser=scanner if pause else None)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    watch = BluezWatch(bus)
    await watch.start()
    scan_task = asyncio.create_task(scanner.run(watch))
    await eventually(lambda: scanner.health()[0].scanning)
    adv_task = asyncio.create_task(adv.run(bus, watch))
    views = []
    try:
        await eventually(lambda: adv.health().rotations == 1)
        for n in range(2, ROTATIONS + 2):
            await clock.advance(INTERVAL_SECONDS)
            await eventually(lambda n=n: adv.health().rotations == n)
            await eventually(lambda: scanner.health()[0].scanning)
            heard = len(got)
            await eventually(lambda heard=heard: len(got) > heard)  # scanning works again after the rotation
            views.append(await ctl.adapter_stats("hci0"))
    finally:
        for task in (adv_task, scan_task):
            task.cancel()
        await asyncio.gather(adv_task, scan_task, return_exceptions=True)
        watch.close()
        bus.disconnect()
    return views, adv, got


async def test_with_the_pause_advertising_is_on_after_every_rotation(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    views, adv, _ = await run_rotations(bed, pause=True)
    assert [v["advertising"] for v in views] == [True] * ROTATIONS
    assert views[-1]["refused_while_scanning"] == 0
    assert views[-1]["registrations"] == ROTATIONS + 1
    assert adv.health().failures == 0


async def test_without_the_pause_advertising_would_be_off(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    views, adv, _ = await run_rotations(bed, pause=False)
    assert [v["advertising"] for v in views] == [False] * ROTATIONS  # off after every rotation
    assert views[-1]["refused_while_scanning"] == ROTATIONS + 1
    assert views[-1]["registrations"] == ROTATIONS + 1  # BlueZ accepted every one of them
    assert adv.health().failures == 0  # and the agent cannot tell: the failure is silent

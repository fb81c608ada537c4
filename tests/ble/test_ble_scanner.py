"""The scanner against the simulated BlueZ: decoding, no addresses, duty cycle, pause, watchdog, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from support.bletools import scanning
from support.polling import eventually

from agent.ble.scanner import DutyCycle, Scanner
from agent.clock import SystemClock
from agent.schemes.base import SchemeName, uuid128
from agent.sightings import RawSighting
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
CONFIG: dict[str, Any] = {
    "tick_seconds": 0.05,
    "radio": {"noise_sigma_db": 0.0},
    "adapters": [{"name": "hci0"}, {"name": "hci1", "x": 10.0}],
}
GAEN_DATA = bytes(range(16)) + bytes([0x50, 0xF8, 0, 0])
DP3T_DATA = bytes(range(100, 120))
EBID_DATA = bytes([0x21]) + bytes(range(200, 216)) + bytes([0x01, 0x00, 0x00])  # version 1, reserved


async def test_sightings_of_our_three_uuids_and_nothing_else(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): GAEN_DATA}, x=1.0, tx_power=-8, include_tx_power=True)
    await ctl.add_beacon({uuid128(0xFD68): DP3T_DATA}, x=2.0)
    await ctl.add_beacon({uuid128(0xFD64): EBID_DATA}, x=1.0, tx_power=-4)
    await ctl.add_beacon({uuid128(0xFEAA): bytes(20)}, x=1.0)  # an Eddystone beacon: not ours
    got: list[RawSighting] = []
    scanner = Scanner(["hci0"], got.append, SystemClock())
    async with scanning(scanner):
        await eventually(lambda: {s.scheme for s in got} == set(SchemeName))
        await asyncio.sleep(0.3)
    by_scheme = {s.scheme: s for s in got}
    gaen, dp3t, ebid = by_scheme[SchemeName.GAEN], by_scheme[SchemeName.DP3T], by_scheme[SchemeName.EBID]
    assert gaen.ephemeral_id == GAEN_DATA[:16] and gaen.metadata == GAEN_DATA[16:]
    assert gaen.rssi == -8 - 41 and gaen.tx_power == -8 and gaen.adapter == "hci0"
    assert dp3t.ephemeral_id == DP3T_DATA[:16] and dp3t.tx_power is None and dp3t.rssi == round(-41 - 20 * 0.30103)
    assert ebid.ephemeral_id == EBID_DATA[1:17] and ebid.tx_power is None  # EBID puts no TX power on air
    assert [f.name for f in dataclasses.fields(RawSighting)] == [
        "scheme",
        "ephemeral_id",
        "time",
        "rssi",
        "tx_power",
        "metadata",
        "adapter",
    ]  # no address field to leak into the store
    (health,) = scanner.health()
    assert health.ignored > 0 and health.rejected == 0 and health.sightings == len(got)
    assert health.last_sighting_at is not None and health.starts == 1


async def test_sink_failures_are_counted_not_fatal(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): GAEN_DATA}, x=1.0)
    calls = []

    def flaky(s: RawSighting) -> None:
        calls.append(s)
        if len(calls) % 2:
            raise RuntimeError("store is busy")

    scanner = Scanner(["hci0"], flaky, SystemClock())
    async with scanning(scanner):
        await eventually(lambda: len(calls) >= 6)
    (h,) = scanner.health()
    assert h.sink_errors >= 3 and h.sightings >= 3 and h.scanning is False


async def test_pause_stops_scanning_on_that_adapter_only(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    scanner = Scanner(["hci0", "hci1"], lambda s: None, SystemClock())
    async with scanning(scanner):
        await eventually(lambda: all(h.scanning for h in scanner.health()))
        async with scanner.paused("hci0"):
            stats = (await ctl.stats())["adapters"]
            assert not stats["hci0"]["discovering"] and stats["hci1"]["discovering"]
        await eventually(lambda: _discovering(ctl, "hci0"))
        async with scanner.paused("hci5"):  # not ours: nothing to pause
            assert await _discovering(ctl, "hci0")


async def _discovering(ctl: SimControl, adapter: str) -> bool:
    return bool((await ctl.adapter_stats(adapter))["discovering"])


async def test_duty_cycle_scans_part_of_each_period(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    scanner = Scanner(["hci0"], lambda s: None, SystemClock(), duty=DutyCycle(0.3, 0.8))
    async with scanning(scanner):
        await asyncio.sleep(2.5)
    starts = (await ctl.adapter_stats("hci0"))["discovery_starts"]
    assert 3 <= starts <= 4


async def test_watchdog_restarts_a_silent_scan(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): GAEN_DATA}, x=1.0)
    got: list[RawSighting] = []
    scanner = Scanner(["hci0"], got.append, SystemClock(), watchdog_s=0.8)
    async with scanning(scanner):
        await eventually(lambda: got)
        await ctl.stall("hci0")
        await asyncio.sleep(0.2)
        stalled_at = len(got)
        await eventually(lambda: scanner.health()[0].watchdog_restarts >= 1, timeout=5)
        await eventually(lambda: len(got) > stalled_at + 3)
    assert scanner.health()[0].restarts >= 1


async def test_repeated_start_failures_escalate_to_a_power_cycle(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.fail_next("hci0", "StartDiscovery", "org.bluez.Error.InProgress", 3)
    scanner = Scanner(["hci0"], lambda s: None, SystemClock(), backoff_max_s=0.1, escalate_after=2)
    async with scanning(scanner):
        await eventually(lambda: scanner.health()[0].scanning, timeout=10)
    (h,) = scanner.health()
    assert h.failures == 3 and h.power_cycles >= 1 and "InProgress" in (h.last_error or "")


async def test_adapter_powered_off_is_powered_on_again(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    scanner = Scanner(["hci0"], lambda s: None, SystemClock(), backoff_max_s=0.1)
    async with scanning(scanner):
        await eventually(lambda: scanner.health()[0].scanning)
        await ctl.set_powered("hci0", False)
        await eventually(lambda: _discovering(ctl, "hci0"), timeout=10)
    (h,) = scanner.health()
    assert h.power_cycles >= 1 and h.restarts >= 1


async def test_passive_scanning_when_bluez_has_the_monitor_api_else_active(make_bed: Bed) -> None:
    config = {**CONFIG, "adapters": [{"name": "hci0", "experimental": True}, {"name": "hci1", "x": 10.0}]}
    bed = make_bed(config)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({uuid128(0xFD6F): GAEN_DATA}, x=1.0)
    await ctl.add_beacon({uuid128(0xFD6F): GAEN_DATA}, x=9.0)
    got: list[RawSighting] = []
    scanner = Scanner(["hci0", "hci1"], got.append, SystemClock(), passive=True)
    async with scanning(scanner):
        await eventually(lambda: {s.adapter for s in got} == {"hci0", "hci1"})
        h0, h1 = scanner.health()
        assert (await ctl.adapter_stats("hci0"))["monitors"] == 1
        assert not (await ctl.adapter_stats("hci0"))["discovering"]
    assert h0.passive and h0.note is None
    assert not h1.passive and "passive scanning unavailable" in (h1.note or "")
    assert (await ctl.adapter_stats("hci0"))["monitors"] == 0  # unregistered on stop

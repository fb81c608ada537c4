"""The advertiser against the simulated BlueZ: registration, rotation, failures, Release, BlueZ restarts."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from dbus_fast import Message
from support.bletools import ebid_scheme, gaen_scheme, on_bluez
from support.polling import eventually

from agent.ble.advertiser import Advertiser
from agent.ble.bluez_watch import BluezWatch
from agent.clock import ManualClock, SystemClock
from agent.schemes.base import uuid128
from agent.schemes.ebid import EbidBatch, EbidScheme
from agent.schemes.gaen import INTERVAL_SECONDS
from agent.sim.air_log import instances, is_non_resolvable_private, violations
from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.status import AgentStatus, render_status

Bed = Callable[..., SimBed]
CONFIG: dict[str, Any] = {
    "tick_seconds": 0.05,
    "adapters": [{"name": "hci0", "adv_interval_ms": 100}, {"name": "hci1", "x": 2.0}],
}


def running(adv: Advertiser) -> AbstractAsyncContextManager[BluezWatch]:
    return on_bluez(lambda watch: adv.run(watch.bus, watch))


async def on_air(ctl: SimControl, adapter: str = "hci0") -> list[dict[str, Any]]:
    return (await ctl.adapter_stats(adapter))["on_air"]


async def test_registers_exactly_our_broadcast(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    clock = SystemClock()
    scheme = gaen_scheme(clock.now())
    adv = Advertiser("hci0", scheme, -8, clock)
    async with running(adv) as watch:
        await eventually(lambda: on_air(ctl))
        (record,) = await on_air(ctl)
        live = scheme.broadcast_at(clock.now(), -8)
        assert live is not None
        assert record["service_data"] == {uuid128(0xFD6F): live.service_data.hex()}
        assert is_non_resolvable_private(record["address"])
        reply = await watch.bus.call(
            Message(
                destination=watch.bus.unique_name,
                path=adv.path,
                interface="org.freedesktop.DBus.Properties",
                member="GetAll",
                signature="s",
                body=["org.bluez.LEAdvertisement1"],
            )
        )
        props = reply.body[0]
        assert set(props) == {"Type", "ServiceUUIDs", "ServiceData", "Includes"}
        assert props["Type"].value == "broadcast" and props["Includes"].value == []
        assert props["ServiceData"].signature == "a{sv}"
        health = adv.health()
        assert health.advertising and health.rotations == 1 and health.failures == 0
        assert health.next_rotation_at == live.valid_until
    await eventually(lambda: _not(on_air(ctl)))  # cancelled: unregistered


async def _not(x: Any) -> bool:
    return not await x


async def test_rotates_id_and_address_together_at_every_boundary(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    start = 1_800_000_000.0
    boundary = start - start % INTERVAL_SECONDS + INTERVAL_SECONDS
    clock = ManualClock(boundary - 5)
    scheme = gaen_scheme(clock.now())
    adv = Advertiser("hci0", scheme, -8, clock)
    async with running(adv):
        await eventually(lambda: adv.health().rotations == 1)
        for n in range(2, 5):
            await clock.advance(INTERVAL_SECONDS)
            await eventually(lambda n=n: adv.health().rotations == n)
    items = instances(bed.air_records())
    assert len(items) == 4
    assert len({i.address for i in items}) == 4
    ids = [i.service_data[0][1][:16] for i in items]
    expected = [scheme.broadcast_at(boundary - 5 + k * INTERVAL_SECONDS, -8) for k in range(4)]
    assert ids == [b.ephemeral_id for b in expected if b is not None]
    assert violations(items) == []


async def test_pipelined_rotations_never_overlap_nor_pair_an_old_address_with_a_new_id(make_bed: Bed) -> None:
    """Unregister and Register leave back to back (no wait for the first reply). Over 20 rotations the old
    instance is always off air before the new one is on, every ID has its own address, and nothing fails:
    were Register ever handled first, the simulator (as bluetoothd) would refuse it as AlreadyExists."""
    bed = make_bed(CONFIG)
    start = 1_800_000_000.0
    boundary = start - start % INTERVAL_SECONDS + INTERVAL_SECONDS
    clock = ManualClock(boundary - 5)
    adv = Advertiser("hci0", gaen_scheme(clock.now(), days=3), -8, clock)
    ctl = await SimControl.connect(bed.bus_address)
    async with running(adv):
        await eventually(lambda: adv.health().rotations == 1)
        for n in range(2, 22):
            await clock.advance(INTERVAL_SECONDS)
            await eventually(lambda n=n: adv.health().rotations == n)
        assert adv.health().failures == 0
        stats = await ctl.adapter_stats("hci0")
        assert (stats["registrations"], stats["refused_registrations"]) == (21, 0)
    items = [i for i in instances(bed.air_records()) if i.adapter == "hci0"]
    assert len(items) == 21 and len({i.address for i in items}) == 21
    assert all(a.off is not None and a.off <= b.on for a, b in itertools.pairwise(items))
    assert violations(items) == []


async def test_an_hour_long_id_keeps_one_address_for_its_hour(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    hour = 3600
    clock = ManualClock(1_800_000_000.0 - 1_800_000_000.0 % hour + 60)
    adv = Advertiser("hci0", ebid_scheme(clock.now(), periods=4, period_s=hour), -8, clock)
    async with running(adv):
        await eventually(lambda: adv.health().rotations == 1)
        for _ in range(5):  # 50 minutes: no re-registration, so no second address for this ID
            await clock.advance(600)
        await asyncio.sleep(0.5)
        assert adv.health().rotations == 1
        await clock.advance(600)  # the next hour: new ID, new address
        await eventually(lambda: adv.health().rotations == 2)
    items = instances(bed.air_records())
    assert len(items) == 2 and items[0].address != items[1].address
    assert items[0].service_data != items[1].service_data
    assert violations(items) == []


async def test_registration_failures_are_retried_and_reported(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.fail_next("hci0", "RegisterAdvertisement", "org.bluez.Error.Failed", 2)
    clock = SystemClock()
    adv = Advertiser("hci0", gaen_scheme(clock.now()), -8, clock)
    async with running(adv):
        await eventually(lambda: adv.health().failures == 1)
        h = adv.health()
        assert not h.advertising and h.last_error and "org.bluez.Error.Failed" in h.last_error
        await eventually(lambda: adv.health().advertising, timeout=15)
        h = adv.health()
        assert h.failures == 2 and h.consecutive_failures == 0
        assert await on_air(ctl)


async def test_a_registration_refused_again_and_again_backs_off_long_and_health_says_why(make_bed: Bed) -> None:
    """NotPermitted ten times: retried after 30, 60, 120... s of the I/O clock (not 1, 2, 4 s), the reason in
    health and in the status line, and advertising as soon as BlueZ accepts."""
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.fail_next("hci0", "RegisterAdvertisement", "org.bluez.Error.NotPermitted", 10)
    clock, io = SystemClock(), ManualClock()
    adv = Advertiser("hci0", gaen_scheme(clock.now()), -8, clock, io_clock=io)
    async with running(adv):
        await eventually(lambda: adv.health().failures == 1)
        for attempt, wait in enumerate([30.0, 60.0, 120.0, 240.0, 480.0, 600.0, 600.0], start=2):
            await io.advance(wait - 1.0)
            await asyncio.sleep(0.2)
            assert adv.health().failures == attempt - 1, f"retried early before attempt {attempt}"
            await io.advance(1.0)
            await eventually(lambda n=attempt: adv.health().failures == n)  # type: ignore[misc]
        h = adv.health()
        assert not h.advertising and h.consecutive_failures == 8
        assert h.note == "registration failing (rejected)"
        assert h.last_error is not None and "org.bluez.Error.NotPermitted" in h.last_error
        line = render_status(status_with(h.problem), clock.now(), True).splitlines()[1]
        assert "OFF (registration failing (rejected); " in line and "NotPermitted" in line and "8 attempts" in line
        for _ in range(3):
            await io.advance(600.0)
            await asyncio.sleep(0.2)
        await eventually(lambda: adv.health().advertising)
        assert adv.health().failures == 10 and await on_air(ctl)


def status_with(problem: str | None) -> AgentStatus:
    return AgentStatus(1, 0.0, 0.0, "gaen", False, None, 8, 0.0, 0, 0, None, None, "none", advertising_problem=problem)


async def test_release_and_adapter_return(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    clock = SystemClock()
    adv = Advertiser("hci0", gaen_scheme(clock.now()), -8, clock)
    async with running(adv):
        await eventually(lambda: adv.health().advertising)
        await ctl.remove_adapter("hci0")
        await eventually(lambda: not adv.health().advertising)
        assert adv.health().releases == 1
        await asyncio.sleep(0.3)
        await ctl.add_adapter("hci0")
        await eventually(lambda: on_air(ctl))
        assert adv.health().advertising and adv.health().rotations == 2


async def test_bluez_restart_means_registering_again(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    clock = SystemClock()
    adv = Advertiser("hci0", gaen_scheme(clock.now()), -8, clock)
    async with running(adv) as watch:
        await eventually(lambda: adv.health().advertising)
        bed.sim.restart(kill=True)  # no Release: only NameOwnerChanged tells us
        ctl = await SimControl.connect(bed.bus_address)
        await eventually(lambda: on_air(ctl))
        assert adv.health().bluez_generation == watch.state.generation == 2
    addresses = {i.address for i in instances(bed.air_records())}
    assert len(addresses) == 2


async def test_no_id_for_now_means_advertising_off_until_new_keys(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    clock = SystemClock()
    adv = Advertiser("hci0", EbidScheme(EbidBatch(900, ())), -8, clock)
    async with running(adv):
        await eventually(lambda: adv.health().note is not None)
        assert not adv.health().advertising and not await on_air(ctl)
        adv.set_scheme(ebid_scheme(clock.now()))
        await eventually(lambda: on_air(ctl))
        assert adv.health().note is None


async def test_tx_power_include_is_opt_in(make_bed: Bed) -> None:
    bed = make_bed(CONFIG)
    ctl = await SimControl.connect(bed.bus_address)
    clock = SystemClock()
    adv = Advertiser("hci0", gaen_scheme(clock.now()), -8, clock, include_tx_power=True)
    async with running(adv):
        await eventually(lambda: on_air(ctl))
    (inst,) = instances(bed.air_records())
    assert inst.tx_power == 0  # the simulated controller's TX power, now in clear on air

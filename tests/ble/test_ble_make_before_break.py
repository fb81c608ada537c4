"""Make-before-break rotation on the simulated BlueZ (real dbus-daemon): the next advert goes on air before
the old one leaves on an extended-advertising controller, never on a legacy one, and no advert ever pairs an
old address with a new ID or the reverse — failures of either half of the rotation included. (That the
simulator would show an overlap on a legacy controller as one address under two IDs is tests/sim's.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from support.bletools import gaen_scheme
from support.polling import eventually

from agent.ble.advertisement import Advertisement
from agent.ble.advertiser import Advertiser
from agent.ble.bluez_watch import BluezWatch
from agent.ble.names import (
    ADAPTER_PREFIX,
    ADV_MANAGER,
    BLUEZ,
    E_FAILED,
    GET_ALL,
    REGISTER_ADVERTISEMENT,
    UNREGISTER_ADVERTISEMENT,
)
from agent.ble.scanner import Scanner
from agent.clock import ManualClock, SystemClock
from agent.schemes.gaen import INTERVAL_SECONDS
from agent.sim.air_log import AirInstance, instances, violations
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
START = 1_800_000_000.0 - 1_800_000_000.0 % INTERVAL_SECONDS + INTERVAL_SECONDS - 5
ROTATIONS = 20


def config(**hci0: Any) -> dict[str, Any]:
    return {"tick_seconds": 0.05, "adapters": [{"name": "hci0", "adv_interval_ms": 100, **hci0}, {"name": "hci1"}]}


class Rig:
    """An advertiser and a scanner on hci0, wired as the daemon wires them (the scanner is the pauser)."""

    def __init__(self, bed: SimBed, **advertiser: Any) -> None:
        self.bed = bed
        self.clock = ManualClock(START)
        self.scheme = gaen_scheme(START, days=3)
        self.scanner = Scanner(["hci0"], lambda _: None, SystemClock())
        self.adv = Advertiser("hci0", self.scheme, -8, self.clock, pauser=self.scanner, **advertiser)
        self.ctl: SimControl
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Rig:
        self.ctl = await SimControl.connect(self.bed.bus_address)
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self.watch = BluezWatch(self.bus)
        await self.watch.start()
        self._tasks.append(asyncio.create_task(self.scanner.run(self.watch)))
        await eventually(lambda: self.scanner.health()[0].scanning)
        self._tasks.append(asyncio.create_task(self.adv.run(self.bus, self.watch)))
        await eventually(lambda: self.adv.health().rotations == 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.watch.close()
        self.bus.disconnect()

    async def rotate(self) -> None:
        n = self.adv.health().rotations + 1
        await self.clock.advance(INTERVAL_SECONDS)
        await eventually(lambda: self.adv.health().rotations == n)

    def on_air(self) -> list[AirInstance]:
        return [i for i in instances(self.bed.air_records()) if i.adapter == "hci0"]


def ids(items: list[AirInstance]) -> list[bytes]:
    return [i.service_data[0][1][:16] for i in items]


@pytest.mark.parametrize("experimental", [False, True])  # BlueZ 5.66 as shipped (no SupportedFeatures), and -E
async def test_extended_controller_puts_the_next_id_on_air_before_the_old_one_leaves(
    make_bed: Bed, experimental: bool
) -> None:
    bed = make_bed(config(extended=True, experimental=experimental))
    async with Rig(bed) as rig:
        starts = (await rig.ctl.adapter_stats("hci0"))["discovery_starts"]
        for _ in range(ROTATIONS):
            await rig.rotate()
        health = rig.adv.health()
        assert health.make_before_break is True and health.failures == 0
        assert {rig.adv.path} <= set(rig.adv.paths)
        # no scan pause on per-set addresses: discovery was never stopped and restarted
        assert (await rig.ctl.adapter_stats("hci0"))["discovery_starts"] == starts
        await eventually(lambda: len(rig.on_air()) == ROTATIONS + 1 and rig.on_air()[-2].off is not None)
    items = rig.on_air()
    assert len({i.address for i in items}) == len(items) == len(set(ids(items)))
    for old, new in itertools.pairwise(items):
        assert old.off is not None and new.on < old.off, "the air went empty between two IDs"
    # each set pairs its own address with its own ID, the old ones and the new ones alike
    assert violations(items) == []
    expected = [rig.scheme.broadcast_at(START + k * INTERVAL_SECONDS, -8) for k in range(ROTATIONS + 1)]
    assert ids(items) == [b.ephemeral_id for b in expected if b is not None]


async def test_legacy_controller_never_overlaps(make_bed: Bed) -> None:
    bed = make_bed(config(legacy=True))
    async with Rig(bed) as rig:
        for _ in range(ROTATIONS):
            await rig.rotate()
        assert rig.adv.health().make_before_break is False and rig.adv.health().failures == 0
        assert (await rig.ctl.adapter_stats("hci0"))["refused_while_scanning"] == 0  # the pause did its job
    items = rig.on_air()
    assert len(items) == ROTATIONS + 1
    assert all(old.off is not None and old.off <= new.on for old, new in itertools.pairwise(items))
    assert violations(items) == []


async def test_a_failed_second_register_takes_the_old_advert_off_air_at_once(make_bed: Bed) -> None:
    bed = make_bed(config(extended=True))
    async with Rig(bed) as rig:
        await rig.rotate()
        await rig.ctl.fail_next("hci0", REGISTER_ADVERTISEMENT, E_FAILED)
        rotated_at = rig.clock.now() + INTERVAL_SECONDS
        await rig.clock.advance(INTERVAL_SECONDS)
        await eventually(lambda: rig.adv.health().failures == 1)
        health = rig.adv.health()
        assert not health.advertising and health.last_error and "Failed" in health.last_error
        # the expired ID is not left on air while the retry backs off
        assert (await rig.ctl.adapter_stats("hci0"))["on_air"] == []
        await eventually(lambda: rig.adv.health().rotations == 3)  # the retry (1 s backoff) puts the new ID up
        assert rig.adv.health().advertising
        await rig.rotate()
    items = rig.on_air()
    assert len(items) == 4
    live = rig.scheme.broadcast_at(rotated_at, -8)
    assert live is not None and ids(items)[2] == live.ephemeral_id
    assert items[1].off is not None and items[1].off <= items[2].on  # off before the retry, not overlapped
    assert violations(items) == []


async def test_when_both_halves_fail_the_old_advert_is_still_removed_before_the_retry(make_bed: Bed) -> None:
    bed = make_bed(config(extended=True))
    async with Rig(bed) as rig:
        await rig.rotate()
        await rig.ctl.fail_next("hci0", REGISTER_ADVERTISEMENT, E_FAILED)
        await rig.ctl.fail_next("hci0", UNREGISTER_ADVERTISEMENT, E_FAILED)
        await rig.clock.advance(INTERVAL_SECONDS)
        await eventually(lambda: rig.adv.health().failures >= 1)
        # the expired ID's advert is taken off before the new ID goes up (1 s backoff)
        await eventually(lambda: rig.on_air()[1].off is not None)
        await eventually(lambda: rig.adv.health().rotations == 3)
        assert rig.adv.health().advertising
    items = rig.on_air()
    assert len(items) == 3
    assert items[1].off is not None and items[1].off <= items[2].on
    assert violations(items) == []


async def test_a_failed_unregister_of_the_old_advert_is_retried_while_the_new_one_stays_on(make_bed: Bed) -> None:
    bed = make_bed(config(extended=True))
    async with Rig(bed) as rig:
        await rig.ctl.fail_next("hci0", UNREGISTER_ADVERTISEMENT, E_FAILED)
        await rig.rotate()
        assert rig.adv.health().advertising
        await eventually(lambda: rig.adv.health().failures == 1)
        # both on air until the retry (1 s backoff) removes the old one; the new one is never touched
        await eventually(lambda: len(rig.on_air()) == 2 and rig.on_air()[0].off is not None)
        assert len((await rig.ctl.adapter_stats("hci0"))["on_air"]) == 1
        assert rig.adv.health().advertising and rig.adv.health().rotations == 2
        await rig.rotate()
    items = rig.on_air()
    assert len(items) == 3 and items[1].off is not None and items[2].on < items[1].off
    assert violations(items) == []


async def test_make_before_break_needs_a_free_instance(make_bed: Bed) -> None:
    """HardwareOffload but every instance taken (SupportedInstances 0 beside ours): the pause path."""
    bed = make_bed(config(extended=True, max_advertisements=1))
    async with Rig(bed) as rig:
        for _ in range(3):
            await rig.rotate()
        assert rig.adv.health().make_before_break is False and rig.adv.health().failures == 0
    items = rig.on_air()
    assert all(old.off is not None and old.off <= new.on for old, new in itertools.pairwise(items))
    assert violations(items) == []


async def test_a_rotation_does_not_wait_for_bluetoothd_to_describe_the_controller(make_bed: Bed) -> None:
    """The capability is read after each registration, not at the rotation: a GetAll bluetoothd never answers
    holds up no rotation (asked at the rotation, it kept the expired ID on air for the whole call timeout)."""
    bed = make_bed(config(extended=True))
    async with Rig(bed, call_timeout_s=30.0) as rig:
        await rig.rotate()
        await eventually(lambda: rig.adv.health().next_make_before_break is True)
        await rig.ctl.drop_next(GET_ALL, count=3)  # every answer from here to the end of the test is lost
        for _ in range(3):
            await asyncio.wait_for(rig.rotate(), 5.0)
            assert rig.adv.health().make_before_break is True
        assert (await rig.ctl.stats())["dropped_calls"] >= 1  # the reads were asked, and not answered
    items = rig.on_air()
    assert len(items) == 5 and violations(items) == []


async def test_an_instance_taken_since_the_last_read_is_replaced_in_place_at_once(make_bed: Bed) -> None:
    """Another program takes the free instance between our read and the rotation: BlueZ refuses the overlap
    ("Maximum advertisements reached"), and the rotation goes break-before-make through the instance the old
    advert leaves, with no failure and no backoff."""
    bed = make_bed(config(extended=True, max_advertisements=2))
    async with Rig(bed) as rig:
        await rig.rotate()
        await eventually(lambda: rig.adv.health().next_make_before_break is True)
        other = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            stranger = Advertisement(lambda: None)
            stranger.set_content(0xFEAA, b"\x10\x00stranger")
            other.export("/stranger", stranger)
            reply = await other.call(
                Message(
                    destination=BLUEZ,
                    path=f"{ADAPTER_PREFIX}hci0",
                    interface=ADV_MANAGER,
                    member=REGISTER_ADVERTISEMENT,
                    signature="oa{sv}",
                    body=["/stranger", {}],
                )
            )
            assert reply.message_type is MessageType.METHOD_RETURN, reply.body
            await rig.rotate()
            health = rig.adv.health()
            assert health.failures == 0 and health.advertising and health.make_before_break is False
            await eventually(lambda: rig.adv.health().next_make_before_break is False)  # read afresh
            await rig.rotate()
            assert rig.adv.health().failures == 0
        finally:
            other.disconnect()
    items = [i for i in rig.on_air() if i.service_data[0][0].startswith("0000fd6f")]  # ours, not the stranger's
    assert len(items) == 4
    assert items[1].off is not None and items[1].off <= items[2].on  # the old one left before the new came
    assert violations(items) == []

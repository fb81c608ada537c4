"""The simulated BlueZ over a real dbus-daemon, driven by unmodified bleak and raw D-Bus clients."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from support.polling import eventually
from support.simtools import FD6F, RawAdvertiser, add_match, advert_props, bluez_call

from agent.sim.air_log import END_CLIENT_GONE, END_DATA_CHANGED, instances, is_non_resolvable_private, violations
from agent.sim.control import SimControl, SimControlError
from agent.sim.harness import HarnessError, SimBed, SimProcess

QUIET = {"noise_sigma_db": 0.0}
Bed = Callable[..., SimBed]


def two_adapters(**hci0: Any) -> dict[str, Any]:
    return {
        "tick_seconds": 0.05,
        "radio": QUIET,
        "adapters": [
            {"name": "hci0", "adv_interval_ms": 50, **hci0},
            {"name": "hci1", "x": 1.0, "adv_interval_ms": 50},
        ],
    }


class Heard:
    def __init__(self) -> None:
        self.items: list[tuple[BLEDevice, AdvertisementData]] = []

    def __call__(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self.items.append((device, adv))


async def test_bleak_hears_a_registered_advert_with_address_rssi_and_tx_power(make_bed: Bed) -> None:
    bed = make_bed(two_adapters(tx_power=-4))
    data = bytes(range(20))
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(data, tx_power=True))
    await adv.register("hci0")
    heard = Heard()
    scanner = BleakScanner(heard, bluez={"adapter": "hci1", "filters": {"DuplicateData": True}})
    await scanner.start()
    await asyncio.sleep(0.6)
    await scanner.stop()
    assert len(heard.items) >= 5  # one report per tick with DuplicateData
    device, ad = heard.items[-1]
    assert is_non_resolvable_private(device.address)
    assert ad.service_data == {FD6F: data} and ad.service_uuids == [FD6F]
    assert ad.rssi == -4 - 41  # 1 m away, no noise
    assert ad.tx_power == -4
    assert device.name is None


async def test_tx_power_is_absent_unless_the_advert_includes_it(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    heard = Heard()
    async with BleakScanner(heard, bluez={"adapter": "hci1", "filters": {"DuplicateData": True}}):
        await eventually(lambda: _truthy(heard.items))
    assert heard.items[0][1].tx_power is None
    assert heard.items[0][1].rssi == -41


async def _truthy(x: object) -> bool:
    return bool(x)


async def test_every_registration_gets_a_fresh_random_address(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    ctl = await SimControl.connect(bed.bus_address)
    addresses = []
    for i in range(4):
        adv.props = advert_props(bytes([i]) * 20)
        await adv.register("hci0")
        (on_air,) = (await ctl.adapter_stats("hci0"))["on_air"]
        addresses.append(on_air["address"])
        await adv.unregister("hci0")
    assert len(set(addresses)) == 4
    assert all(is_non_resolvable_private(a) for a in addresses)
    items = instances(bed.air_records())
    assert [i.address for i in items] == addresses
    assert violations(items) == []


@pytest.mark.parametrize(("extended", "experimental"), [(False, False), (False, True), (True, False), (True, True)])
async def test_two_adverts_at_once_share_the_address_unless_the_controller_is_extended(
    make_bed: Bed, extended: bool, experimental: bool
) -> None:
    """Without extended advertising the controller has one random address, fixed while advertising is on, so
    a second advert on air beside the first goes out under it (old ID and new ID linked: what an overlapping
    rotation would do there); an extended controller gives each advertising set its own, and says so."""
    bed = make_bed(two_adapters(extended=extended, experimental=experimental))
    ctl = await SimControl.connect(bed.bus_address)
    first = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)), "/test/adv0")
    second = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes([1]) * 20), "/test/adv1")
    reply = await bluez_call(
        first.bus,
        "/org/bluez/hci0",
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        ["org.bluez.LEAdvertisingManager1"],
    )
    props = reply.body[0]
    assert ("SupportedSecondaryChannels" in props) is extended  # BlueZ 5.66: only for extended advertising
    assert ("SupportedFeatures" in props) is experimental  # ...and this only with --experimental before 5.77
    if experimental:
        assert ("HardwareOffload" in props["SupportedFeatures"].value) is extended
    await first.register("hci0")
    await second.register("hci0")
    on_air = (await ctl.adapter_stats("hci0"))["on_air"]
    assert len(on_air) == 2
    assert (on_air[0]["address"] == on_air[1]["address"]) is not extended
    items = instances(bed.air_records())
    assert [v.kind for v in violations(items)] == ([] if extended else ["address-with-several-ids"])
    await first.unregister("hci0")
    await second.unregister("hci0")
    await first.register("hci0")  # alone on air again: a fresh address of its own either way
    (alone,) = (await ctl.adapter_stats("hci0"))["on_air"]
    assert alone["address"] not in {a["address"] for a in on_air}


async def test_changing_data_in_place_keeps_the_address_which_the_air_log_flags(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes([1]) * 20))
    await adv.register("hci0")
    adv.emit_changed({"ServiceData": Variant("a{sv}", {FD6F: Variant("ay", bytes([2]) * 20)})})
    await eventually(lambda: _n_instances(bed, 2))
    first, second = instances(bed.air_records())
    assert first.ended_by == END_DATA_CHANGED and first.address == second.address
    assert [v.kind for v in violations([first, second])] == ["address-with-several-ids"]


async def _n_instances(bed: SimBed, n: int) -> bool:
    return len(instances(bed.air_records())) >= n


@pytest.mark.parametrize(
    ("props", "error"),
    [
        (
            {**advert_props(bytes(20)), "ServiceData": Variant("a{say}", {FD6F: bytes(20)})},
            "org.bluez.Error.Failed",
        ),
        (advert_props(bytes(24)), "org.bluez.Error.Failed"),
        (advert_props(bytes(21), tx_power=True), "org.bluez.Error.Failed"),
        ({**advert_props(bytes(20)), "Discoverable": Variant("b", True)}, "org.bluez.Error.Failed"),
    ],
)
async def test_bad_advertisements_are_refused_like_bluetoothd(
    make_bed: Bed, props: dict[str, Variant], error: str
) -> None:
    bed = make_bed(two_adapters())
    adv = await RawAdvertiser.connect(bed.bus_address, props)
    reply = await adv.call("hci0", "RegisterAdvertisement")
    assert reply.message_type is MessageType.ERROR and reply.error_name == error
    assert (await (await SimControl.connect(bed.bus_address)).adapter_stats("hci0"))["registered"] == 0


async def test_registration_errors_for_duplicates_limits_and_unknown_adverts(make_bed: Bed) -> None:
    bed = make_bed(two_adapters(max_advertisements=1))
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    other = RawAdvertiser(adv.bus, advert_props(bytes(20)), "/test/adv1")
    assert (await adv.call("hci0", "UnregisterAdvertisement")).error_name == "org.bluez.Error.DoesNotExist"
    await adv.register("hci0")
    assert (await adv.call("hci0", "RegisterAdvertisement")).error_name == "org.bluez.Error.AlreadyExists"
    assert (await other.call("hci0", "RegisterAdvertisement")).error_name == "org.bluez.Error.NotPermitted"
    assert (await adv.call("hci9", "RegisterAdvertisement")).error_name == "org.freedesktop.DBus.Error.UnknownMethod"


async def test_legacy_adapter_scanning_accepts_a_registration_but_keeps_it_off_air(make_bed: Bed) -> None:
    bed = make_bed(two_adapters(legacy=True))
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await _discovery(adv.bus, "hci0", "StartDiscovery")
    await adv.register("hci0")  # success, as BlueZ replies
    stats = await ctl.adapter_stats("hci0")
    assert stats["registered"] == 1 and not stats["advertising"] and stats["refused_while_scanning"] == 1
    await _discovery(adv.bus, "hci0", "StopDiscovery")
    assert not (await ctl.adapter_stats("hci0"))["advertising"]  # stays off, like the Pi's controller
    await adv.unregister("hci0")
    await adv.register("hci0")  # not scanning now: on air
    assert (await ctl.adapter_stats("hci0"))["advertising"]
    assert [r["e"] for r in bed.air_records()].count("refused") == 1
    await ctl.set_legacy("hci0", False)
    await _discovery(adv.bus, "hci0", "StartDiscovery")
    await adv.unregister("hci0")
    await adv.register("hci0")
    assert (await ctl.adapter_stats("hci0"))["advertising"]  # a modern controller does both


async def _discovery(bus: MessageBus, adapter: str, member: str) -> None:
    reply = await bluez_call(bus, f"/org/bluez/{adapter}", "org.bluez.Adapter1", member)
    assert reply.message_type is MessageType.METHOD_RETURN, reply.error_name


async def test_delivery_only_to_other_scanning_adapters_in_range(make_bed: Bed) -> None:
    config = two_adapters()
    config["adapters"].append({"name": "hci2", "x": 2.0})
    bed = make_bed(config)
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    for name in ("hci0", "hci1"):
        await _discovery(adv.bus, name, "StartDiscovery")
    await asyncio.sleep(0.5)
    stats = (await ctl.stats())["adapters"]
    assert stats["hci0"]["reports_received"] == 0  # a controller does not hear itself
    assert stats["hci2"]["reports_received"] == 0  # not scanning
    assert stats["hci1"]["reports_received"] >= 5
    await ctl.set_position("hci1", 5000.0, 0.0)
    await asyncio.sleep(0.2)
    before = (await ctl.adapter_stats("hci1"))["reports_received"]
    await asyncio.sleep(0.4)
    assert (await ctl.adapter_stats("hci1"))["reports_received"] == before  # out of range


async def test_device_objects_expire_and_vanish_with_their_client(make_bed: Bed) -> None:
    config = two_adapters()
    config["device_timeout_seconds"] = 0.5
    bed = make_bed(config)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    watcher = await MessageBus(bus_address=bed.bus_address).connect()
    removed: list[str] = []

    def on_signal(msg: Message) -> bool:
        if msg.member == "InterfacesRemoved" and "org.bluez.Device1" in msg.body[1]:
            assert msg.path == "/"  # ObjectManager signals come from / as bluetoothd sends them
            removed.append(msg.body[0])
        return False

    watcher.add_message_handler(on_signal)
    await add_match(watcher, "type='signal',member='InterfacesRemoved'")
    await _discovery(watcher, "hci1", "StartDiscovery")
    await eventually(lambda: _has_device(watcher, "hci1"))
    adv.bus.disconnect()  # the advertiser's process dies
    await eventually(lambda: _truthy(removed), timeout=5)
    assert not await _has_device(watcher, "hci1")
    (inst,) = instances(bed.air_records())
    assert inst.ended_by == END_CLIENT_GONE


async def _has_device(bus: MessageBus, adapter: str) -> bool:
    reply = await bluez_call(bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
    return any(p.startswith(f"/org/bluez/{adapter}/dev_") for p in reply.body[0])


async def test_adapters_can_be_removed_and_added_back(make_bed: Bed) -> None:
    bed = make_bed(two_adapters(legacy=True))
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    await ctl.remove_adapter("hci0")
    await eventually(lambda: _truthy(adv.releases))  # bluetoothd releases adverts of a removed adapter
    objects = (await bluez_call(adv.bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")).body[0]
    assert "/org/bluez/hci0" not in objects
    await ctl.add_adapter("hci0")
    stats = await ctl.adapter_stats("hci0")
    assert stats["legacy"] and stats["powered"] and stats["registered"] == 0
    await ctl.add_adapter("hci7", x=3.0, experimental=True)
    assert (await ctl.adapter_stats("hci7"))["position"] == [3.0, 0.0]
    with pytest.raises(SimControlError, match="exists"):
        await ctl.add_adapter("hci7")
    with pytest.raises(SimControlError, match="name"):
        await ctl.add_adapter("wlan0", x=1)


async def test_powering_off_takes_adverts_off_and_on_again_under_a_new_address(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    await ctl.set_powered("hci0", False)
    assert not (await ctl.adapter_stats("hci0"))["advertising"]
    reply = await bluez_call(adv.bus, "/org/bluez/hci0", "org.bluez.Adapter1", "StartDiscovery")
    assert reply.error_name == "org.bluez.Error.NotReady"
    await ctl.set_powered("hci0", True)
    assert (await ctl.adapter_stats("hci0"))["advertising"]
    first, second = instances(bed.air_records())
    assert first.address != second.address and first.ended_by == "powered-off"


async def test_restart_and_crash_of_the_service(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    first_owner = await ctl.owner()
    bed.sim.restart()  # SIGTERM: bluetoothd-like shutdown releases adverts
    await eventually(lambda: _truthy(adv.releases))
    second_owner = await ctl.owner()
    assert second_owner and second_owner != first_owner
    assert (await ctl.adapter_stats("hci0"))["registered"] == 0  # a new daemon knows nothing
    await adv.register("hci0")
    bed.sim.restart(kill=True)  # SIGKILL: no Release, no goodbye
    await asyncio.sleep(0.2)
    assert adv.releases == 1
    assert bed.air_summary().restarts == 2
    bed.sim.kill()
    assert await ctl.owner() is None


async def test_harness_leaves_nothing_behind(tmp_path: Any) -> None:
    bed = SimBed(two_adapters(), tmp_path / "bed").start()
    pids = [bed.bus.pid, bed.sim.pid]
    assert all(p is not None and _alive(p) for p in pids)
    bed.close()
    assert not any(_alive(p) for p in pids if p is not None)
    assert not (tmp_path / "bed" / "bus").exists()
    broken = SimBed({"adapters": [{"name": "nope"}]}, tmp_path / "broken")
    with pytest.raises(HarnessError, match=r"adapters\[0\]\.name"):
        broken.start()
    assert broken.bus.pid is None and broken.sim.pid is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


async def test_duplicate_data_filter_decides_between_one_report_and_one_per_advert(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    counts = []
    for dup in (False, True):
        heard = Heard()
        async with BleakScanner(heard, bluez={"adapter": "hci1", "filters": {"DuplicateData": dup}}):
            await asyncio.sleep(0.5)
        counts.append(len(heard.items))
    assert counts[0] <= 1 and counts[1] >= 5


async def test_passive_scanning_needs_the_experimental_monitor_api(make_bed: Bed) -> None:
    config = two_adapters()
    config["adapters"][1]["experimental"] = True
    bed = make_bed(config)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    patterns = [OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x6f\xfd")]
    heard = Heard()
    async with BleakScanner(heard, scanning_mode="passive", bluez={"adapter": "hci1", "or_patterns": patterns}):
        await eventually(lambda: _truthy(heard.items))
    assert heard.items[0][1].service_data == {FD6F: bytes(20)}
    with pytest.raises(BleakError, match="passive scanning"):
        async with BleakScanner(heard, scanning_mode="passive", bluez={"adapter": "hci0", "or_patterns": patterns}):
            pass


async def test_stalled_controller_recovers_when_scanning_restarts(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    ctl = await SimControl.connect(bed.bus_address)
    adv = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20)))
    await adv.register("hci0")
    await _discovery(adv.bus, "hci1", "StartDiscovery")
    await ctl.stall("hci1")
    await asyncio.sleep(0.1)
    before = (await ctl.adapter_stats("hci1"))["reports_received"]
    await asyncio.sleep(0.3)
    assert (await ctl.adapter_stats("hci1"))["reports_received"] == before
    await _discovery(adv.bus, "hci1", "StopDiscovery")
    await _discovery(adv.bus, "hci1", "StartDiscovery")
    await asyncio.sleep(0.3)
    assert (await ctl.adapter_stats("hci1"))["reports_received"] > before


async def test_injected_failures_come_back_as_bluez_errors(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.fail_next("hci1", "StartDiscovery", "org.bluez.Error.InProgress", 2)
    bus = await MessageBus(bus_address=bed.bus_address).connect()
    names = [
        (await bluez_call(bus, "/org/bluez/hci1", "org.bluez.Adapter1", "StartDiscovery")).error_name for _ in range(3)
    ]
    assert names == ["org.bluez.Error.InProgress", "org.bluez.Error.InProgress", None]
    with pytest.raises(SimControlError, match="cannot inject"):
        await ctl.fail_next("hci1", "RemoveDevice", "org.bluez.Error.Failed")


async def test_advertising_interval_sets_the_report_rate(make_bed: Bed) -> None:
    bed = make_bed(two_adapters())  # 50 ms tick
    slow = await RawAdvertiser.connect(bed.bus_address, advert_props(bytes(20), MaxInterval=Variant("u", 250)))
    fast = RawAdvertiser(slow.bus, advert_props(bytes([1]) * 20, MinInterval=Variant("u", 20)), "/test/adv1")
    await slow.register("hci0")
    await fast.register("hci0")
    heard = Heard()
    async with BleakScanner(heard, bluez={"adapter": "hci1", "filters": {"DuplicateData": True}}):
        await asyncio.sleep(1.5)
    per_s = {
        data[0]: sum(1 for _, ad in heard.items if ad.service_data[FD6F] == data) / 1.5
        for data in (bytes(20), bytes([1]) * 20)
    }
    assert 2.5 <= per_s[0] <= 5.5  # one report per 250 ms interval
    assert per_s[1] >= 12  # 20 ms: capped at one report per 50 ms tick
    await slow.unregister("hci0")
    await fast.unregister("hci0")
    events = {i.service_data[0][1][0]: i.events or 0 for i in instances(bed.air_records())}
    assert 7 <= events[1] / events[0] <= 12  # every advertising event counted: (250 + 5) / (20 + 5) ms


async def test_a_second_simulator_on_the_same_bus_refuses_to_queue(make_bed: Bed, tmp_path: Any) -> None:
    bed = make_bed(two_adapters())
    second = SimProcess(bed.bus_address, bed.config_path, tmp_path)
    with pytest.raises(HarnessError, match="already owned"):
        second.start()
    assert not second.running()


def test_command_line_errors_are_one_line_and_exit_2(tmp_path: Any) -> None:
    bad = tmp_path / "sim.json"
    bad.write_text('{"adapters": [{"name": "hci0", "x": "far"}]}')
    for args in (["--bus", "unix:path=/nonexistent", "--config", str(bad)], ["--config", str(bad)]):
        proc = subprocess.run(
            [sys.executable, "-m", "agent.sim", *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m agent.sim: error:")
    first = subprocess.run(
        [sys.executable, "-m", "agent.sim", "--bus", "unix:path=/nonexistent", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert first.stderr.strip() == "error: adapters[0].x: expected a number, got 'far'"


async def test_the_simulator_survives_a_flood_bigger_than_its_socket_buffer(make_bed: Bed) -> None:
    bed = make_bed({"tick_seconds": 0.02, "adapters": [{"name": "hci0"}]})
    ctl = await SimControl.connect(bed.bus_address)
    for i in range(300):
        await ctl.add_beacon({FD6F: bytes([i % 256]) * 20}, x=1.0, interval_ms=20)
    heard = Heard()
    async with BleakScanner(heard, bluez={"adapter": "hci0", "filters": {"DuplicateData": True}}):
        await asyncio.sleep(2.0)
    assert bed.sim.running()
    stats = await ctl.stats()
    assert stats["adapters"]["hci0"]["reports_received"] >= 3000 and len(heard.items) >= 3000

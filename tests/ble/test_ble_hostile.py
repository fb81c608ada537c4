"""Hostile adverts — random service data, wrong lengths and types, huge payloads, floods — never crash or
stall the scanner: genuine sightings keep arriving, and every bad one is counted as rejected or ignored."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from dbus_fast import Variant
from support.bletools import scanning
from support.polling import eventually

from agent.ble.scanner import Scanner
from agent.clock import SystemClock
from agent.schemes.base import DecodedAdvert, uuid128
from agent.schemes.decoder import decode_service_data
from agent.sightings import RawSighting
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
OURS = [uuid128(u) for u in (0xFD6F, 0xFD68, 0xFD64)]
GENUINE = bytes(range(16)) + bytes(4)


def sd(entries: dict[str, Variant]) -> Variant:
    return Variant("a{sv}", entries)


def hostile_devices(rng: random.Random) -> list[dict[str, Variant]]:
    devices: list[dict[str, Variant]] = []
    for length in (0, 1, 15, 19, 21, 31, 255, 4096, 200_000):  # wrong lengths, huge payloads
        for uuid in OURS:
            devices.append({"ServiceData": sd({uuid: Variant("ay", os.urandom(length))}), "RSSI": Variant("n", -50)})
    for _ in range(50):  # random service data under random and our UUIDs
        uuid = rng.choice([*OURS, f"{rng.getrandbits(128):032x}"[:8] + "-0000-1000-8000-00805f9b34fb"])
        devices.append({"ServiceData": sd({uuid: Variant("ay", os.urandom(20))}), "RSSI": Variant("n", -60)})
    devices += [
        {"ServiceData": sd({OURS[2]: Variant("ay", bytes([1]) + bytes(16) + bytes([9, 0, 0]))})},  # EBID v9
        {"ServiceData": sd({OURS[0]: Variant("ay", GENUINE)}), "RSSI": Variant("s", "loud")},  # wrong types
        {"ServiceData": sd({OURS[0]: Variant("ay", GENUINE)}), "RSSI": Variant("n", 127)},  # "no RSSI": kept as -127
        {"ServiceData": sd({OURS[0]: Variant("ay", GENUINE)}), "RSSI": Variant("n", -40), "TxPower": Variant("s", "")},
        {"ServiceData": sd({OURS[0]: Variant("s", "not bytes")}), "RSSI": Variant("n", -40)},
        {"ServiceData": Variant("s", "not a dict"), "RSSI": Variant("n", -40)},
        {"ServiceData": sd({"not-a-uuid": Variant("ay", GENUINE)}), "RSSI": Variant("n", -40)},
        {"ServiceData": sd({u: Variant("ay", os.urandom(20)) for u in [f"{i:04x}" for i in range(2000)]})},
        {"UUIDs": Variant("as", ["x"] * 5000), "Name": Variant("s", "\u202e" * 1000)},
        {"ManufacturerData": Variant("a{qv}", {0x004C: Variant("ay", os.urandom(1000))})},
        {},
    ]
    return devices


async def test_hostile_adverts_never_crash_or_stall_the_scanner(make_bed: Bed) -> None:
    config: dict[str, Any] = {"tick_seconds": 0.05, "adapters": [{"name": "hci0"}]}
    bed = make_bed(config)
    ctl = await SimControl.connect(bed.bus_address)
    await ctl.add_beacon({OURS[0]: GENUINE}, x=1.0)  # one honest phone nearby
    got: list[RawSighting] = []
    scanner = Scanner(["hci0"], got.append, SystemClock())
    rng = random.Random(4)
    async with scanning(scanner):
        await eventually(lambda: got)
        paths = []
        devices = hostile_devices(rng)
        for i, props in enumerate(devices):
            paths.append(await ctl.inject_device("hci0", f"3A:00:00:00:{i >> 8:02X}:{i & 0xFF:02X}", props))
        for path in paths:  # updates to those devices, as PropertiesChanged
            await ctl.inject_properties(path, {"ServiceData": sd({OURS[1]: Variant("ay", os.urandom(7))})})
            await ctl.inject_properties(path, {"RSSI": Variant("i", 5)})
        for path in paths[::2]:
            await ctl.inject_remove(path)
        before = len(got)
        await eventually(lambda: len(got) >= before + 10, timeout=5)  # genuine sightings still flowing
        (h,) = scanner.health()
    assert h.scanning and h.failures == 0 and h.restarts == 0
    assert h.rejected >= 27 + 4  # wrong lengths under our UUIDs, bad EBID version, bad RSSIs
    # random 20-byte data under our UUIDs is indistinguishable from a real ID; nothing else gets through
    assert {s.ephemeral_id for s in got} <= {GENUINE[:16]} | well_formed_ids(devices)
    assert all(s.rssi in range(-127, 21) and (s.tx_power is None or type(s.tx_power) is int) for s in got)


def well_formed_ids(devices: list[dict[str, Variant]]) -> set[bytes]:
    ids = set()
    for props in devices:
        entries = props.get("ServiceData")
        if entries is None or entries.signature != "a{sv}":
            continue
        for uuid, value in entries.value.items():
            if value.signature == "ay":
                decoded = decode_service_data(uuid, bytes(value.value))
                if isinstance(decoded, DecodedAdvert):
                    ids.add(decoded.ephemeral_id)
    return ids

"""Sightings/s through the scanner path (bleak callback → decode → sink) on the simulated bus, and CPU per
1 000 sightings, as ratios to floors measured in the same run.

Run: python tests/bench/bench_ble.py [--beacons N] [--seconds S]   (with the package installed, or PYTHONPATH=.)
The simulator (its own process) floods one adapter with N beacons carrying distinct GAEN payloads, one
report per beacon per 20 ms tick (fewer when the simulator itself cannot keep up). In this process, three
receivers take turns on the same flood:
'raw D-Bus' = dbus-fast only, counting PropertiesChanged signals (the floor of any D-Bus scanner);
'bleak' = BleakScanner with an empty callback; 'agent' = agent.ble.scanner.Scanner into a list sink.
'decode only' feeds the agent's callback prepared AdvertisementData in a loop, without D-Bus.
CPU is this process's CPU time (the simulator's is not counted). Shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.ble.bluez_watch import BluezWatch
from agent.ble.scanner import DutyCycle, Scanner, _AdapterScan
from agent.clock import SystemClock
from agent.schemes.base import uuid128
from agent.sightings import RawSighting
from agent.sim.control import SimControl
from agent.sim.harness import SimBed

GAEN = uuid128(0xFD6F)


async def measure(run: Callable[[Callable[[], int]], Awaitable[None]], seconds: float) -> dict[str, float]:
    """Start a receiver, let it warm up, then count what it receives and the CPU it takes."""
    count = [0]
    stop = asyncio.Event()

    def counter() -> int:
        return count[0]

    async def body() -> None:
        await run(lambda: count.__setitem__(0, count[0] + 1) or 0)  # type: ignore[func-returns-value]

    task = asyncio.create_task(_until(body(), stop))
    await asyncio.sleep(1.0)
    c0, cpu0, t0 = counter(), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    c1, cpu1, t1 = counter(), time.process_time(), time.perf_counter()
    stop.set()
    await task
    n = c1 - c0
    return {
        "per_s": n / (t1 - t0),
        "cpu_ms_per_1000": (cpu1 - cpu0) * 1e6 / n if n else float("nan"),
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
    }


async def _until(work: Awaitable[None], stop: asyncio.Event) -> None:
    task = asyncio.ensure_future(work)
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def raw_dbus(tick: Callable[[], int]) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()

    def on_message(msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.member == "PropertiesChanged":
            tick()
        return False

    bus.add_message_handler(on_message)
    rule = "type='signal',interface='org.freedesktop.DBus.Properties',path_namespace='/org/bluez'"
    for member, sig, body in (
        ("AddMatch", "s", [rule]),
        ("SetDiscoveryFilter", "a{sv}", [{"DuplicateData": Variant("b", True)}]),
        ("StartDiscovery", "", []),
    ):
        dest, path, iface = (
            ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
            if member == "AddMatch"
            else ("org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1")
        )
        await bus.call(Message(destination=dest, path=path, interface=iface, member=member, signature=sig, body=body))
    try:
        await asyncio.Event().wait()
    finally:
        bus.disconnect()


async def bare_bleak(tick: Callable[[], int]) -> None:
    def cb(device: BLEDevice, adv: AdvertisementData) -> None:
        tick()

    async with BleakScanner(cb, bluez={"adapter": "hci0", "filters": {"DuplicateData": True}}):
        await asyncio.Event().wait()


async def agent_scanner(tick: Callable[[], int]) -> None:
    sink: list[RawSighting] = []

    def store(s: RawSighting) -> None:
        sink.append(s)
        tick()
        if len(sink) > 100_000:
            sink.clear()

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    watch = BluezWatch(bus)
    await watch.start()
    try:
        await Scanner(["hci0"], store, SystemClock()).run(watch)
    finally:
        watch.close()
        bus.disconnect()


def decode_only(n: int) -> dict[str, float]:
    """The agent's callback alone, on prepared adverts: decode + RawSighting + sink, no D-Bus, no bleak."""
    sink: list[RawSighting] = []
    scan = _AdapterScan("hci0", sink.append, SystemClock(), SystemClock(), DutyCycle(), False, 90, 30, 3, 10)
    device = BLEDevice("00:11:22:33:44:55", None, {})
    adverts = [AdvertisementData(None, {}, {GAEN: os.urandom(20)}, [GAEN], None, -60, ("/p", {})) for _ in range(1000)]
    other = AdvertisementData(None, {0x4C: b"x" * 20}, {}, [], None, -60, ("/p", {}))
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        scan.on_advert(device, adverts[i % 1000])
    t1, cpu1 = time.perf_counter(), time.process_time()
    for _ in range(n):
        scan.on_advert(device, other)
    t2 = time.perf_counter()
    assert len(sink) == n
    return {
        "per_s": n / (t1 - t0),
        "cpu_ms_per_1000": (cpu1 - cpu0) * 1e6 / n,
        "ignored_per_s": n / (t2 - t1),
    }


async def bench(beacons: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-ble-") as tmp:
        config = {"tick_seconds": 0.02, "device_timeout_seconds": 300, "adapters": [{"name": "hci0"}]}
        with SimBed(config, Path(tmp), air_log=False, log_level="WARNING") as bed:
            os.environ.update(bed.env)
            ctl = await SimControl.connect(bed.bus_address)
            for i in range(beacons):
                await ctl.add_beacon({GAEN: os.urandom(20)}, x=1.0 + i % 10, interval_ms=20)
            offered_before = (await ctl.adapter_stats("hci0"))["reports_received"]
            t0 = time.perf_counter()
            results = {
                "raw_dbus": await measure(raw_dbus, seconds),
                "bleak": await measure(bare_bleak, seconds),
                "agent": await measure(agent_scanner, seconds),
            }
            stats = await ctl.stats()
            offered = (stats["adapters"]["hci0"]["reports_received"] - offered_before) / (time.perf_counter() - t0)
            congested = stats["congested_ticks"]
            ctl.close()
    decode = decode_only(200_000)
    agent, raw, bare = results["agent"], results["raw_dbus"], results["bleak"]
    return {
        "beacons": beacons,
        "offered_reports_per_s": round(offered),
        "simulator_congested_ticks": congested,
        "receivers": {
            name: {k: round(v, 1) if k != "cpu_share" else round(v, 2) for k, v in r.items()}
            for name, r in results.items()
        },
        "decode_only": {k: round(v, 1) for k, v in decode.items()},
        "agent_sightings_per_s_per_core": round(1e6 / agent["cpu_ms_per_1000"]),
        "ratios": {
            "agent_rate_to_raw_dbus_rate": round(agent["per_s"] / raw["per_s"], 3),
            "agent_cpu_to_bleak_cpu": round(agent["cpu_ms_per_1000"] / bare["cpu_ms_per_1000"], 3),
            "agent_cpu_to_raw_dbus_cpu": round(agent["cpu_ms_per_1000"] / raw["cpu_ms_per_1000"], 3),
            "decode_share_of_agent_cpu": round(decode["cpu_ms_per_1000"] / agent["cpu_ms_per_1000"], 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beacons", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench(args.beacons, args.seconds)), indent=2))


if __name__ == "__main__":
    main()

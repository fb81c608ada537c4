"""``python -m agent.sim --bus ADDRESS --config FILE [--clock SPEC] [--air-log FILE]``: run a simulated BlueZ.

Prints ``READY`` on stdout once it owns ``org.bluez`` (requested last, without queueing, so a leftover
simulator makes this one fail instead of waiting silently). SIGTERM/SIGINT stop it the way bluetoothd
stops: adverts released, adapters removed, name released.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from dbus_fast import NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from agent.aio import first
from agent.ble.names import BLUEZ
from agent.clock import Clock, SystemClock, clock_from_spec
from agent.sim.air_log import AirLogWriter, ReceiveLog
from agent.sim.bluez import SimBluez
from agent.sim.config import SimConfig, load_sim_config

log = logging.getLogger("agent.sim")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent.sim", description=__doc__.splitlines()[0])
    p.add_argument("--bus", required=True, help="D-Bus address of the private bus to serve org.bluez on")
    p.add_argument("--config", required=True, type=Path, help="simulator config (.json or .toml)")
    p.add_argument("--clock", default=None, help="clock spec shared with the agents (system, accelerated:…)")
    p.add_argument("--air-log", type=Path, default=None, help="append every advert put on air here (JSONL)")
    p.add_argument("--receive-log", type=Path, default=None, help="append every report handed to a scanner (CSV)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


async def serve(args: argparse.Namespace, config: SimConfig, clock: Clock) -> int:
    air = AirLogWriter(args.air_log) if args.air_log else None
    bus = await MessageBus(bus_address=args.bus).connect()
    received = ReceiveLog(args.receive_log) if args.receive_log else None
    sim = SimBluez(bus, config, clock, SystemClock(), air, received)
    await sim.start()
    reply = await bus.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
    if reply is not RequestNameReply.PRIMARY_OWNER:
        print(f"error: {BLUEZ} is already owned on {args.bus}", file=sys.stderr)
        bus.disconnect()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    try:
        await first(air=sim.run_air(), stop=stop.wait(), bus=bus.wait_for_disconnect())
    except Exception:
        log.exception("air loop failed")
    if bus.connected:
        await sim.shutdown()
        try:
            await asyncio.wait_for(bus.release_name(BLUEZ), 2.0)
        except Exception:  # the bus may be going away with us; nothing left to release then
            log.debug("release_name failed", exc_info=True)
        bus.disconnect()
    if air is not None:
        air.close()
    if received is not None:
        received.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=args.log_level, format="%(asctime)s sim %(levelname)s %(message)s")
    try:
        config = load_sim_config(args.config)
        clock = clock_from_spec(args.clock)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args, config, clock))
    except (OSError, EOFError) as exc:
        print(f"error: cannot serve on {args.bus}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

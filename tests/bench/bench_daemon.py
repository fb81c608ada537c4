"""Memory and CPU of ``proxitrace run`` over a simulated hour with 50 peers in range, against an idle daemon.

Run: python tests/bench/bench_daemon.py [--peers 50] [--speed 60] [--minutes 60]
(with the package installed, or PYTHONPATH=.)

Two runs of the unmodified daemon (a subprocess) on the simulated BlueZ, one after the other, each for the
same simulated time on an accelerated clock: 'idle' with nobody in range (the baseline: the interpreter,
the imports, the timers, advertising and scanning an empty air), and 'loaded' with N peers within 1 to 10 m.
Each peer advertises a GAEN payload every 250 ms (the specification's 200 to 270 ms) and draws a new payload
every 15 simulated minutes, as a phone would. The simulated air delivers one report per peer per tick, and
the tick is set to one advertising interval of real time, so the daemon gets the reports per real second
a device would; its own timers (flush, status, key rotation) run ``speed`` times faster than on a device,
which makes the CPU figures an upper bound.

Printed: RSS peak (VmHWM) and CPU seconds (user + system) of the daemon process from the moment it
advertises and scans (start-up and imports excluded; they are in the RSS), sightings stored, the store's
size, and the ratios loaded/idle. Shared, noisy machine: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.schemes.base import uuid128
from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.status import read_status
from agent.store import DB_FILE

GAEN = uuid128(0xFD6F)
ROTATION_SECONDS = 900  # simulated
ADVERT_INTERVAL_MS = 250
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: any fixed day will do


def _proc_figures(pid: int) -> tuple[float, float]:
    """(RSS peak in MiB, CPU seconds) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return hwm_kib / 1024, ticks / os.sysconf("SC_CLK_TCK")


async def _peers(ctl: SimControl, count: int, speed: float, until: float, rng: random.Random) -> int:
    """Keep ``count`` peers on air until ``until`` (monotonic), each with a new payload per rotation."""
    payloads = 0
    ids: list[str] = []
    while True:
        for ident in ids:
            await ctl.remove_beacon(ident)
        ids = []
        for i in range(count):
            ids.append(
                await ctl.add_beacon(
                    {GAEN: rng.randbytes(20)},
                    x=1.0 + 9.0 * rng.random(),
                    y=0.5 * (i % 3),
                    tx_power=-8,
                    interval_ms=ADVERT_INTERVAL_MS,
                )
            )
        payloads += count
        left = until - time.monotonic()
        if left <= 0:
            return payloads
        await asyncio.sleep(min(left, ROTATION_SECONDS / speed))
        if time.monotonic() >= until:
            return payloads


async def _run(peers: int, speed: float, minutes: float, workdir: Path) -> dict[str, float]:
    config = {
        "tick_seconds": ADVERT_INTERVAL_MS / 1000,
        "device_timeout_seconds": 30,
        "adapters": [{"name": "hci0", "tx_power": -8}],
    }
    origin = time.time() + 8.0  # time to start up before the simulated hour begins
    spec = f"accelerated:{START!r}:{speed!r}:{origin!r}"
    with SimBed(config, workdir / "bed", clock_spec=spec, air_log=False, log_level="WARNING") as bed:
        conf = workdir / "agent.toml"
        conf.write_text('[agent]\nscheme = "gaen"\n[ble]\nadvertise_adapter = "hci0"\nscan_adapters = ["hci0"]\n')
        state = workdir / "state"
        log = (workdir / "agent.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run", "--clock", spec],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **bed.env},
        )
        try:
            while not ((s := read_status(state)) and s.advertising and any(a.scanning for a in s.adapters)):
                if daemon.poll() is not None or time.time() > origin + 30:
                    raise RuntimeError(f"the daemon did not come up: see {workdir / 'agent.log'}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, origin - time.time()))
            _, cpu_at_start = _proc_figures(daemon.pid)
            until = time.monotonic() + minutes * 60 / speed
            ctl = await SimControl.connect(bed.bus_address)
            try:
                if peers:
                    payloads = await _peers(ctl, peers, speed, until, random.Random(1))
                else:
                    payloads = 0
                    await asyncio.sleep(until - time.monotonic())
            finally:
                ctl.close()
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited {daemon.returncode}: see {workdir / 'agent.log'}")
            rss_mib, cpu_at_end = _proc_figures(daemon.pid)
            cpu_s = cpu_at_end - cpu_at_start
            wall = minutes * 60 / speed
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            log.close()
        if code != 0:
            raise RuntimeError(f"the daemon exited {code} on SIGTERM: see {workdir / 'agent.log'}")
    db = state / DB_FILE
    conn = sqlite3.connect(db)
    (sightings,) = conn.execute("SELECT coalesce(sum(count), 0) FROM sightings").fetchone()
    (distinct,) = conn.execute("SELECT count(DISTINCT id) FROM sightings").fetchone()
    conn.close()
    return {
        "rss_peak_mib": round(rss_mib, 1),
        "cpu_seconds": round(cpu_s, 2),
        "wall_seconds": round(wall, 1),
        "cpu_share": round(cpu_s / wall, 3),
        "sightings_stored": sightings,
        "sightings_per_wall_second": round(sightings / wall, 1),
        "distinct_ids_stored": distinct,
        "payloads_on_air": payloads,
        "store_mib": round(sum(p.stat().st_size for p in state.glob(DB_FILE + "*")) / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-", dir="/tmp") as tmp:
        idle = asyncio.run(_run(0, args.speed, args.minutes, Path(tmp) / "idle"))
        loaded = asyncio.run(_run(args.peers, args.speed, args.minutes, Path(tmp) / "loaded"))
    busy_cpu = loaded["cpu_seconds"] - idle["cpu_seconds"]
    print(
        json.dumps(
            {
                "peers": args.peers,
                "speed": args.speed,
                "simulated_minutes": args.minutes,
                "idle": idle,
                "loaded": loaded,
                "ratios": {
                    "rss_loaded_to_idle": round(loaded["rss_peak_mib"] / idle["rss_peak_mib"], 2),
                    "cpu_loaded_to_idle": round(loaded["cpu_seconds"] / idle["cpu_seconds"], 2),
                },
                "cpu_ms_per_1000_sightings_above_idle": round(busy_cpu * 1e6 / max(1, loaded["sightings_stored"]), 1),
                "cpu_seconds_per_real_hour_at_this_load": round(loaded["cpu_share"] * 3600),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

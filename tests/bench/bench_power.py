"""CPU, wake-ups and memory of ``proxitrace run`` with 50 peers at real advertising rates, per duty cycle.

Run: python tests/bench/bench_power.py [--peers 50] [--seconds 60] [--speed 60]
(with the package installed, or PYTHONPATH=.; it reuses bench_daemon's /proc reader and peer driver)

What "a simulated hour" means here. Real advertising rates need real time: a peer advertises every 250 ms of
*real* time and the simulated air delivers one report per peer per tick of real time, so the daemon's hot
path (D-Bus signal → bleak → decode → aggregate) runs at exactly the rate a worn device sees. Its timers
(flush, status, key rotation, scan windows) run on an accelerated clock ``speed`` times faster, so one real
minute at speed 60 covers a simulated hour of rotations and windows: the figures are an upper bound for the
timer share, and exact for the per-report share, which dominates with 50 peers. CPU seconds per hour is
therefore (CPU seconds / real seconds) * 3600: the cost of one hour of a device among 50 peers.

The duty cycles are on the simulated clock too: ``scan_period_seconds`` 600 simulated is 10 real seconds,
so 20 % and 80 % scan 2 and 8 real seconds in 10 (``scan_seconds`` 120 and 480).

Printed per run (continuous, 80 %, 20 %): CPU seconds per hour and share of one core, wake-ups per second
(voluntary + involuntary context switches of all the daemon's threads, /proc/PID/task/*/status), RSS peak
(VmHWM) and RSS growth from the start of the measurement to its end, sightings per peer per real minute.
Baseline in the same run: an idle asyncio process (the interpreter, one event loop, nothing to do) measured
over the same seconds, for ratios. Shared, noisy machine: read the ratios and give the load average.
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

from bench_daemon import START, _peers, _proc_figures

from agent.sim.control import SimControl
from agent.sim.harness import SimBed
from agent.status import read_status
from agent.store import DB_FILE

ADVERT_INTERVAL_MS = 250
DUTY = {"continuous": (0, 0), "duty-80": (480, 600), "duty-20": (120, 600)}


def _proc(pid: int) -> dict[str, float]:
    """RSS now and peak (MiB), CPU seconds, and context switches summed over the process's threads."""
    rss_peak, cpu = _proc_figures(pid)
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                switches += int(line.split()[1])
    return {"rss": rss, "rss_peak": rss_peak, "cpu": cpu, "switches": switches}


def _figures(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    cpu = after["cpu"] - before["cpu"]
    return {
        "cpu_seconds_per_hour": round(cpu / wall * 3600, 1),
        "share_of_one_core_pct": round(100 * cpu / wall, 2),
        "wakeups_per_second": round((after["switches"] - before["switches"]) / wall, 1),
        "rss_peak_mib": round(after["rss_peak"], 1),
        "rss_growth_mib": round(after["rss"] - before["rss"], 2),
    }


async def _run(name: str, duty: tuple[int, int], peers: int, seconds: float, speed: float, work: Path) -> dict:
    config = {
        "tick_seconds": ADVERT_INTERVAL_MS / 1000,
        "device_timeout_seconds": 30,
        "adapters": [{"name": "hci0", "tx_power": -8}],
    }
    origin = time.time() + 8.0
    spec = f"accelerated:{START!r}:{speed!r}:{origin!r}"
    with SimBed(config, work / "bed", clock_spec=spec, air_log=False, log_level="WARNING") as bed:
        conf = work / "agent.toml"
        conf.write_text(
            '[agent]\nscheme = "gaen"\n[ble]\nadvertise_adapter = "hci0"\nscan_adapters = ["hci0"]\n'
            f"scan_seconds = {duty[0]}\nscan_period_seconds = {duty[1]}\n"
        )
        state = work / "state"
        log = (work / "agent.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(conf), "--state-dir", str(state), "run", "--clock", spec],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **bed.env},
        )
        idle = subprocess.Popen([sys.executable, "-c", "import asyncio; asyncio.run(asyncio.sleep(3600))"])
        try:
            while not ((s := read_status(state)) and s.advertising):
                if daemon.poll() is not None or time.time() > origin + 30:
                    raise RuntimeError(f"the daemon did not come up: see {work / 'agent.log'}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, origin - time.time()))
            d0, i0 = _proc(daemon.pid), _proc(idle.pid)
            start = time.monotonic()
            ctl = await SimControl.connect(bed.bus_address)
            try:
                await _peers(ctl, peers, speed, start + seconds, random.Random(1))
            finally:
                ctl.close()
            wall = time.monotonic() - start
            d1, i1 = _proc(daemon.pid), _proc(idle.pid)
        finally:
            idle.kill()
            idle.wait()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            log.close()
        if code != 0:
            raise RuntimeError(f"the daemon exited {code} on SIGTERM: see {work / 'agent.log'}")
    conn = sqlite3.connect(state / DB_FILE)
    (sightings,) = conn.execute("SELECT coalesce(sum(count), 0) FROM sightings").fetchone()
    conn.close()
    out = {"duty": name, "daemon": _figures(d0, d1, wall), "idle_asyncio": _figures(i0, i1, wall)}
    out["sightings_per_peer_per_minute"] = round(sightings / peers / (wall / 60), 1)
    out["real_seconds"] = round(wall, 1)
    idle_cpu = out["idle_asyncio"]["cpu_seconds_per_hour"]  # often 0: below /proc's 10 ms tick over a minute
    out["cpu_ratio_to_idle_asyncio"] = round(out["daemon"]["cpu_seconds_per_hour"] / idle_cpu, 1) if idle_cpu else None
    out["rss_ratio_to_idle_asyncio"] = round(out["daemon"]["rss_peak_mib"] / out["idle_asyncio"]["rss_peak_mib"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="real seconds per run")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-power-", dir="/tmp") as tmp:
        for name, duty in DUTY.items():
            results.append(asyncio.run(_run(name, duty, args.peers, args.seconds, args.speed, Path(tmp) / name)))
    print(json.dumps({"peers": args.peers, "load_average": os.getloadavg(), "runs": results}, indent=2))


if __name__ == "__main__":
    main()

"""An EBID daemon whose pseudonym the backend erases registers again by itself and advertises the new
pseudonym's EBIDs, no enrolment code typed (issue 17, item 2).

The daemon runs in this process against the simulated BlueZ on its private dbus-daemon and the real
backend on 127.0.0.1, both on one manual clock. The device was registered with an enrolment code (as
``proxitrace register`` does) and was then heard by someone who reported; the daemon's first EBID round
gets the at-risk verdict and the backend erases the pseudonym; the next round, due within
``reregister_spread_seconds``, pays for a new one with the capability the first registration brought.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import backend_config, heard, running_backend
from support.polling import until
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.sim.air_log import ephemeral_id_of, instances
from agent.sim.harness import SimBed
from agent.status import read_status
from agent.store import Store

SPREAD = 120.0  # [backend] reregister_spread_seconds: the manual clock is moved past it


def brief(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(state_dir), "status", "--brief"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def on_air(bed: SimBed) -> list[bytes]:
    return [ephemeral_id_of(i) for i in instances(bed.air_records()) if i.adapter == "hci0" and i.off is None]


def ebids(store: Store) -> set[bytes]:
    return {e.ebid for e in KeyRing(store, SchemeName.EBID).ebid_batch().entries}


async def test_after_an_erasure_the_daemon_registers_again_and_advertises_without_a_code(
    make_bed: Callable[..., SimBed], tmp_path: Path
) -> None:
    bed = make_bed({"tick_seconds": 0.1, "adapters": [{"name": "hci0", "adv_interval_ms": 100}]})
    clock = ManualClock(time.time())
    key = ec.generate_private_key(ec.SECP256R1())
    async with running_backend(backend_config(tmp_path / "backend"), clock, key) as rb, aiohttp.ClientSession() as http:
        device = make_device(tmp_path, "state", rb.url, rb, http, clock, SchemeName.EBID)
        await device.client.register(await issue(http, rb, "enrolment-codes"), tx_power=-8)
        first = ebids(device.store)
        registered_at = clock.now()
        await clock.advance(3600)
        reporter = make_device(tmp_path, "reporter", rb.url, rb, http, clock, SchemeName.EBID)
        reporter.store.add_windows(heard(device.ring.scheme(), registered_at + 60, minutes=20, rssi=-60))
        contacts = reporter.client.ebid_contacts(None, clock.now(), receiver_correction=0.0)
        await reporter.client.report_ebid(await issue(http, rb, "tans"), contacts)
        device.store.close()

        public = rb.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        config = config_from_dict(
            {
                "agent": {"scheme": "ebid", "flush_seconds": 0.3, "accept_unsynchronised_clock_testbed": True},
                "ble": {"advertise_adapter": "hci0", "scan_adapters": ["hci0"]},
                "backend": {
                    "url": rb.url,
                    "public_key": public.decode(),
                    "dummy_traffic": False,
                    "reregister_spread_seconds": SPREAD,
                },
            }
        )
        daemon = Daemon(config, tmp_path / "state", clock)
        run = asyncio.create_task(daemon.run())
        try:
            assert await until(lambda: (s := read_status(daemon.state_dir)) is not None and s.registering_again, 60)
            assert ebids(daemon.store) == set()  # erased: nothing to advertise until the new registration
            waiting = brief(daemon.state_dir)  # off the air by design: exposed, not "needs attention"
            assert waiting.returncode == 0 and waiting.stdout.startswith("state=exposed why=- "), waiting
            await clock.advance(SPREAD)
            assert await until(lambda: bool(ebids(daemon.store)), 30), "never registered again"
            fresh = ebids(daemon.store)
            assert fresh and not fresh & first  # a new pseudonym's batch
            assert await until(lambda: bool(on_air(bed)) and on_air(bed)[-1] in fresh, 30), "new EBIDs never on air"
            assert await until(
                lambda: (s := read_status(daemon.state_dir)) is not None and s.advertising and not s.registering_again,
                30,
            )
            status = read_status(daemon.state_dir)
            assert status is not None and status.last_sync_ok and not status.needs_registration
            done = brief(daemon.state_dir)
            assert done.returncode == 0 and done.stdout.startswith("state=exposed why=- advertising=on "), done
            totals = rb.backend.store.count_totals()
            assert totals["ebid_registrations"] == 1 and totals["ebid_reregistrations"] == 1  # one code, ever
        finally:
            daemon.stop()
            await asyncio.wait_for(run, 30)

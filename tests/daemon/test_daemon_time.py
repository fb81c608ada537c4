"""The daemon's time gate on the simulated BlueZ: started a day in the past it neither advertises nor
records until the clock is synchronised; a later jump re-derives the live ID and closes the open windows.

The daemon runs in this process (so it can take a manual clock and the kernel-state double of
``support.timetools``) against the simulated BlueZ on its private dbus-daemon; a raw advertiser on the other
adapter is the peer it should hear."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.polling import until
from support.simtools import RawAdvertiser, advert_props
from support.timetools import SteppedKernelTime

from agent.clock import DAY, ManualClock
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.schemes.base import SchemeName
from agent.sim.air_log import ephemeral_id_of, instances
from agent.sim.harness import SimBed
from agent.status import read_status
from agent.timesource import build_time
from agent.timetrust import TimeTrust

PEER = bytes(range(20))  # a GAEN payload: 16-byte RPI + 4 bytes of metadata


def bed_config() -> dict[str, object]:
    return {
        "tick_seconds": 0.1,
        "radio": {"noise_sigma_db": 0.0},
        "adapters": [{"name": "hci0", "adv_interval_ms": 100}, {"name": "hci1", "x": 1.0, "adv_interval_ms": 100}],
    }


def trust_shown(daemon: Daemon) -> TimeTrust | None:
    status = read_status(daemon.state_dir)
    return status.time.trust if status is not None and status.time is not None else None


def ours_on_air(bed: SimBed) -> list[bytes]:
    return [ephemeral_id_of(i) for i in instances(bed.air_records()) if i.adapter == "hci0"]


async def test_a_day_behind_waits_for_sync_then_advertises_records_and_handles_a_jump(
    make_bed: Callable[..., SimBed], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bed = make_bed(bed_config())
    peer = await RawAdvertiser.connect(bed.bus_address, advert_props(PEER))
    await peer.register("hci1")
    floor = build_time()
    clock = ManualClock(time.time() - DAY)  # booted without network: a day behind, before this build
    kernel = SteppedKernelTime(clock, not_before=floor, synchronised=False)
    config = config_from_dict(
        {
            "agent": {"scheme": "gaen", "flush_seconds": 0.3},
            "ble": {"advertise_adapter": "hci0", "scan_adapters": ["hci0"]},
        }
    )
    daemon = Daemon(config, tmp_path / "state", clock, time_source=kernel)
    caplog.set_level(logging.INFO)
    run = asyncio.create_task(daemon.run())
    try:
        # Untrusted: the peer is on the air all along, but nothing is advertised and nothing is stored.
        assert await until(lambda: (s := read_status(daemon.state_dir)) is not None and s.time is not None, 15)
        await asyncio.sleep(5.0)  # two looks at the clock and time for the scanner to have heard the peer
        status = read_status(daemon.state_dir)
        assert status is not None and status.time is not None
        assert status.time.trust is TimeTrust.BEFORE_BUILD and not status.advertising
        assert ours_on_air(bed) == []
        assert list(daemon.store.windows(scheme=SchemeName.GAEN)) == [] and len(daemon.aggregator) == 0
        assert "not advertising, recording or matching" in caplog.text

        kernel.synchronised = True
        kernel.step(DAY)  # the NTP client's first sync steps the clock a day forward
        assert await until(lambda: bool(ours_on_air(bed)), 30), "never advertised after the sync"
        assert await until(lambda: bool(list(daemon.store.windows(scheme=SchemeName.GAEN))), 30), "nothing recorded"
        windows = list(daemon.store.windows(scheme=SchemeName.GAEN))
        assert {w.ephemeral_id for w in windows} == {PEER[:16]}
        assert all(w.window_start >= floor - 60 for w in windows)  # stamped with the synchronised time
        assert await until(lambda: trust_shown(daemon) is TimeTrust.SYNCHRONISED, 15)
        first_id = ours_on_air(bed)[-1]

        caplog.clear()
        kernel.step(-3600)  # an operator's `date -s` an hour back
        assert await until(lambda: ours_on_air(bed)[-1] != first_id, 30), "live ID not re-derived after the jump"
        jumped = [r.getMessage() for r in caplog.records if "clock jumped" in r.getMessage()]
        assert len(jumped) == 1 and jumped[0].startswith("clock jumped -3600 s")
        # the window open at the jump was closed under the old time; the peer heard since is in a fresh one
        starts = {w.window_start for w in daemon.store.windows()}
        assert any(t > clock.now() + 1800 for t in starts)
        assert await until(lambda: any(w.window_start <= clock.now() for w in daemon.store.windows()), 30)
        assert await until(lambda: (s := read_status(daemon.state_dir)) is not None and s.time.jumps == 2, 15)  # type: ignore[union-attr]
    finally:
        daemon.stop()
        await asyncio.wait_for(run, 30)

"""What a report would send (the consent screen shows exactly this), and the EBID loop's housekeeping."""

import asyncio
import os
from pathlib import Path

import aiohttp
from support.backend_harness import DAY, T0, RunningBackend, heard
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.schemes import ebid
from agent.schemes.base import SchemeName
from agent.store import OwnKey
from agent.sync import RiskVerdict, SyncError

TODAY = int(T0) // DAY


def test_gaen_report_keys_follow_the_onset(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.GAEN)
    for day in range(TODAY - 5, TODAY + 2):  # five past days, today and tomorrow
        a.store.put_own_key(
            OwnKey(SchemeName.GAEN, "tek", day * DAY, (day + 1) * DAY, os.urandom(16), {"rolling_start": day * 144})
        )
    days = lambda keys: sorted(k.rolling_start_interval_number // 144 for k in keys)  # noqa: E731
    assert days(a.client.report_keys(SchemeName.GAEN, None, T0)) == list(range(TODAY - 5, TODAY + 1))
    assert days(a.client.report_keys(SchemeName.GAEN, TODAY - 1, T0)) == list(range(TODAY - 3, TODAY + 1))
    assert days(a.client.report_keys(SchemeName.GAEN, TODAY + 1, T0)) == [TODAY - 1, TODAY]  # never tomorrow


def test_dp3t_without_a_chain_has_nothing_to_report(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.DP3T)
    assert a.client.report_keys(SchemeName.DP3T, None, T0) == []
    a.ring.ensure(T0)
    [key] = a.client.report_keys(SchemeName.DP3T, TODAY - 10, T0)
    assert key.rolling_start_interval_number == TODAY * 144  # the chain starts today: nothing older exists


async def test_ebid_contacts_carry_attenuation_and_the_ecc_when_kept(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.EBID)
    await a.client.register(await issue(http, running, "enrolment-codes"))
    b.store.add_windows(heard(a.ring.scheme(), T0, minutes=3, rssi=-70, keep_ecc=True))
    contacts = b.client.ebid_contacts(None, T0 + 600, receiver_correction=-3.0)
    [contact] = contacts
    entry = a.ring.ebid_batch().entry_at(T0)
    assert entry is not None and (contact.ebid, contact.ecc, contact.period) == (entry.ebid, entry.ecc, entry.period)
    # no TX power on air: against the 0 dBm reference, 0-(-70-3) and 0-(-68-3)
    assert [(s.typical_attenuation, s.min_attenuation) for s in contact.scans] == [(73, 71)] * 3
    b.store.wipe()
    b.store.add_windows(heard(a.ring.scheme(), T0, minutes=1))
    assert [c.ecc for c in b.client.ebid_contacts(None, T0 + 600, 0.0)] == [None]  # the scanner dropped it


async def test_ebid_loop_refills_the_batch_and_polls_status(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    await a.client.register(await issue(http, running, "enrolment-codes"))
    assert a.ring.ebid_periods_left(clock.now()) == 192
    await clock.advance(DAY + 3600)  # fewer than a day of EBIDs left
    assert a.ring.ebid_periods_left(clock.now()) * 900 < DAY
    results: list[tuple[RiskVerdict | SyncError, float]] = []
    task = asyncio.create_task(a.client.run_ebid(lambda r, d: results.append((r, d))))
    try:
        for _ in range(500):
            if results:
                break
            await asyncio.sleep(0.01)
        result, delay = results[0]
        assert isinstance(result, RiskVerdict) and not result.at_risk
        assert 21_600 <= delay <= 22_200  # the status interval plus jitter
        assert a.ring.ebid_periods_left(clock.now()) == 192  # refilled from the current period on
        assert a.ring.ebid_batch().entry_at(clock.now()) is not None
        assert ebid.period_of(clock.now()) in {e.period for e in a.ring.ebid_batch().entries}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

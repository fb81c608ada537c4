"""End to end on 127.0.0.1, for DP-3T, GAEN and EBID: a device reports with a TAN, another device pulls
(or, for EBID, polls its status) and learns of the exposure."""

from pathlib import Path

import aiohttp
from support.backend_harness import DAY, T0, RunningBackend, heard
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName

CONTACT = T0 - 19 * 3600  # yesterday 15:00 UTC
MIDNIGHT = (int(T0) // DAY + 1) * DAY


async def test_gaen(tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.GAEN)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.GAEN)
    a.ring.ensure(CONTACT)
    b.store.add_windows(heard(a.ring.scheme(), CONTACT, minutes=20, rssi=-60))  # 52 dB for 20 minutes

    keys = a.client.report_keys(SchemeName.GAEN, None, clock.now())
    assert {k.rolling_start_interval_number // 144 for k in keys} == {int(CONTACT) // DAY, int(T0) // DAY}
    await a.client.report(SchemeName.GAEN, await issue(http, running, "tans"), None, keys)

    early = await b.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
    assert (early.lists, early.notify) == (0, False)  # nothing released before the 10-12 bucket closes
    await clock.advance(2 * 3600)
    outcome = await b.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
    assert (outcome.lists, outcome.keys, outcome.matched_keys, outcome.notify) == (1, 1, 1, True)
    [record] = b.store.exposures()
    assert record.day == int(CONTACT) // DAY and record.notify and record.score == 20
    assert b.client.last_tag(SchemeName.GAEN) == int(T0 + 7200) * 1000
    again = await b.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
    assert (again.lists, again.notify) == (0, False)  # incremental: nothing new after the tag


async def test_dp3t(tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.DP3T)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.DP3T)
    a.ring.ensure(CONTACT)
    b.store.add_windows(heard(a.ring.scheme(), CONTACT, minutes=20, rssi=-60))
    old_chain = a.ring.dp3t_state()

    keys = a.client.report_keys(SchemeName.DP3T, None, clock.now())
    assert [(k.rolling_start_interval_number // 144, k.key_data) for k in keys] == [
        (old_chain.start_day, old_chain.start_sk)
    ]
    await a.client.report(SchemeName.DP3T, await issue(http, running, "tans"), None, keys)
    fresh = a.ring.dp3t_state()
    assert fresh.start_sk != old_chain.start_sk and fresh.start_day == int(T0) // DAY  # a new chain from today

    await clock.advance(MIDNIGHT + 7200 - clock.now() - 1)
    assert (await b.client.sync(SchemeName.DP3T, RiskSettings(), 0.0)).lists == 0  # held while the chain lived
    await clock.advance(1)
    outcome = await b.client.sync(SchemeName.DP3T, RiskSettings(), 0.0)
    assert (outcome.matched_keys, outcome.notify) == (1, True)
    assert [r.day for r in b.store.exposures() if r.notify] == [int(CONTACT) // DAY]


async def test_ebid(tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.EBID)
    creds = await a.client.register(await issue(http, running, "enrolment-codes"), tx_power=-8)
    assert a.store.credential("ebid") == creds
    assert a.ring.ebid_periods_left(clock.now()) == 192  # the first batch: two days of 15-minute periods
    b.store.add_windows(heard(a.ring.scheme(), T0 + 600, minutes=20, rssi=-60))
    await clock.advance(3600)

    contacts = b.client.ebid_contacts(None, clock.now(), receiver_correction=0.0)
    assert len(contacts) == 2 and {len(c.scans) for c in contacts} == {5, 15}  # 10:10-10:30 over two periods
    # against the 0 dBm reference (the advert has no TX power); the backend adds a's declared -8: 52 dB
    assert {s.typical_attenuation for c in contacts for s in c.scans} == {60}
    await b.client.report_ebid(await issue(http, running, "tans"), contacts)

    result = await a.client.ask_risk_verdict()
    assert result.at_risk and result.must_register_again
    assert result.explanation["notify"] is True
    assert [r.day for r in a.store.exposures() if r.notify] == [int(T0) // DAY]
    assert a.store.credential("ebid") is None and a.ring.ebid_periods_left(clock.now()) == 0

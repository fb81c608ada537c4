"""EBID reports compute attenuation by the device's own risk rule (``agent.risk``: the correction, and the
fixed reference TX power since EBID adverts carry none) and carry the "TX power assumed" note to the
backend. The backend corrects each scan with the TX power the heard device declared at registration; when
it declared none, the risk verdict says the power was assumed, as a device's own assessment would."""

import dataclasses
from pathlib import Path

import aiohttp
from support.backend_harness import T0, RunningBackend, heard
from support.sync_devices import issue, make_device

from agent.clock import ManualClock
from agent.protocol import wire
from agent.risk import exposure_windows_from_samples, samples_from_sightings
from agent.schemes.base import SchemeName
from agent.server.db import Exposure
from agent.server.ebid import with_declared_tx_power


def test_the_note_travels_only_when_set_so_other_reports_stay_byte_for_byte() -> None:
    plain, assumed = wire.ScanRecord(1.0, 60, 58), wire.ScanRecord(2.0, 61, 59, assumed_tx_power=True)
    body = wire.scans_body([plain, assumed])
    assert body[0] == {"time": 1.0, "typicalAttenuation": 60, "minAttenuation": 58}
    assert body[1]["txPowerAssumed"] is True
    assert wire.parse_scans(body, "scans") == (plain, assumed)


async def test_unknown_tx_power_is_assumed_and_reported(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.EBID)
    await a.client.register(await issue(http, running, "enrolment-codes"))
    windows = heard(a.ring.scheme(), T0 + 60, minutes=20, rssi=-50)
    b.store.add_windows(dataclasses.replace(w, tx_power=None, rssi_sum=w.rssi_sum - 1) for w in windows)
    await clock.advance(3600)

    contacts = b.client.ebid_contacts(None, clock.now(), receiver_correction=0.0)
    scans = [s for c in contacts for s in c.scans]
    assert len(scans) == 20 and all(s.assumed_tx_power for s in scans)
    assert {(s.typical_attenuation, s.min_attenuation) for s in scans} == {(50, 48)}  # 0 - (-50.25), 0 - (-48)
    await b.client.report_ebid(await issue(http, running, "tans"), contacts)

    verdict = await a.client.ask_risk_verdict()
    assert verdict.at_risk
    notes = [n for d in verdict.explanation["days"] for n in d["notes"]]
    assert any("TX power was unknown for 20 of 20 scan instance(s)" in n for n in notes), notes


async def test_a_report_rounds_attenuation_as_the_device_own_windows_do(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """At exactly x.5 dB the report and the device's exposure windows agree (half up), so one contact is
    never weighed in two buckets depending on which side scores it."""
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.EBID)
    await a.client.register(await issue(http, running, "enrolment-codes"))
    heard_windows = heard(a.ring.scheme(), T0 + 60, minutes=5, rssi=-54)
    halves = [dataclasses.replace(w, tx_power=None, rssi_sum=w.rssi_sum - w.count / 2) for w in heard_windows]
    b.store.add_windows(halves)
    await clock.advance(3600)
    scans = [s for c in b.client.ebid_contacts(None, clock.now(), receiver_correction=0.0) for s in c.scans]
    device = exposure_windows_from_samples(samples_from_sightings(halves, receiver_correction=0.0, default_tx_power=0))
    assert {s.typical_attenuation for s in scans} == {55}  # 0 - (-54.5), half up (nearest-even would say 54)
    assert {i.typical_attenuation for w in device for i in w.scan_instances} == {55}


def test_the_backend_adds_the_declared_tx_power_to_assumed_scans_only() -> None:
    assumed, measured = wire.ScanRecord(1.0, 60, 58, assumed_tx_power=True), wire.ScanRecord(2.0, 61, 59)
    [e] = with_declared_tx_power([Exposure(7, 1.0, (assumed, measured))], -8)
    assert e.scans == (wire.ScanRecord(1.0, 52, 50, assumed_tx_power=False), measured)
    [same] = with_declared_tx_power([Exposure(7, 1.0, (assumed,))], None)
    assert same.scans == (assumed,)


async def test_a_declared_tx_power_scores_like_one_on_air(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """60 dB against the reference, -8 dBm declared: scored as 52 dB, with no "TX power unknown" note."""
    a = make_device(tmp_path, "a", running.url, running, http, clock, SchemeName.EBID)
    b = make_device(tmp_path, "b", running.url, running, http, clock, SchemeName.EBID)
    await a.client.register(await issue(http, running, "enrolment-codes"), tx_power=-8)
    b.store.add_windows(heard(a.ring.scheme(), T0 + 60, minutes=20, rssi=-60))
    await clock.advance(3600)
    contacts = b.client.ebid_contacts(None, clock.now(), receiver_correction=0.0)
    await b.client.report_ebid(await issue(http, running, "tans"), contacts)
    verdict = await a.client.ask_risk_verdict()
    assert verdict.at_risk
    notes = [n for d in verdict.explanation["days"] for n in d["notes"]]
    assert not any("TX power was unknown" in n for n in notes), notes

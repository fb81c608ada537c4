"""Re-registration without a person (issue 17, item 2), end to end with the real backend on 127.0.0.1.

A registration's answer carries the backend's blind signature on a token the device blinded: its
re-registration capability. After an at-risk verdict erases the pseudonym (or the backend purges a silent
one), the device's EBID round registers again with it, no enrolment code, and has EBIDs to advertise at
once. A capability works once, only under its own key, and the operator's database (every snapshot of it,
raw file bytes included) cannot join the old pseudonym to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from support.backend_calls import buy_tokens, post
from support.backend_harness import T0, RunningBackend, heard
from support.polling import until
from support.sync_devices import Device, issue, make_device

from agent.clock import ManualClock
from agent.protocol import proof_of_work, wire
from agent.protocol.fields import b64
from agent.schemes.base import SchemeName
from agent.server.db import DB_FILE
from agent.sync import Unregistered
from agent.sync.service import EBID_CAPABILITY, EBID_CREDENTIAL

TX_POWER = -8


async def registered(
    tmp_path: Path, name: str, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> Device:
    device = make_device(tmp_path, name, running.url, running, http, clock, SchemeName.EBID)
    await device.client.register(await issue(http, running, "enrolment-codes"), tx_power=TX_POWER)
    return device


async def make_at_risk(
    tmp_path: Path,
    running: RunningBackend,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    contacts: list[Device],
    reporter: Device | None = None,
) -> None:
    """A diagnosed device heard each of ``contacts`` closely for 20 minutes and reports with a TAN."""
    if reporter is None:
        reporter = make_device(tmp_path, "reporter", running.url, running, http, clock, SchemeName.EBID)
    for i, contact in enumerate(contacts):
        reporter.store.add_windows(heard(contact.ring.scheme(), T0 + 600 + 1800 * i, minutes=20, rssi=-60))
    await clock.advance(3600 + 1800 * len(contacts))
    heard_ids = reporter.client.ebid_contacts(None, clock.now(), receiver_correction=0.0)
    await reporter.client.report_ebid(await issue(http, running, "tans"), heard_ids)


def own_ebids(device: Device) -> set[bytes]:
    return {e.ebid for e in device.ring.ebid_batch().entries}


async def test_an_erased_device_registers_again_by_itself_and_advertises_at_once(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    old_creds, old_capability, old_ebids = a.store.credential(EBID_CREDENTIAL), a.client.capability(), own_ebids(a)
    assert old_capability is not None and old_ebids
    await make_at_risk(tmp_path, running, http, clock, [a])

    verdict = await a.client.ebid_round()  # the daemon's round: the verdict erases the pseudonym
    assert verdict.at_risk and verdict.must_register_again
    assert [r.day for r in a.store.exposures() if r.notify] == [int(T0) // 86_400]  # the exposure is kept
    assert a.store.credential(EBID_CREDENTIAL) is None and a.client.capability() == old_capability

    await clock.advance(900)
    again = await a.client.ebid_round()  # the next round registers again first, with the capability

    assert not again.at_risk and not again.must_register_again
    new_creds = a.store.credential(EBID_CREDENTIAL)
    assert new_creds is not None and old_creds is not None
    assert new_creds["client_id"] != old_creds["client_id"]
    assert a.ring.ebid_periods_left(clock.now()) > 0 and not own_ebids(a) & old_ebids  # new EBIDs, new pseudonym
    new_capability = a.client.capability()
    assert new_capability is not None and new_capability.token != old_capability.token
    store = running.backend.store
    assert store.registration_by_client(str(old_creds["client_id"])) is None
    fresh = store.registration_by_client(str(new_creds["client_id"]))
    assert fresh is not None and store.registration(fresh.id).tx_power == TX_POWER  # type: ignore[union-attr]
    assert store.count_totals()["ebid_reregistrations"] == 1
    later = await a.client.ebid_round()  # the new pseudonym is a working one, with no risk of its own
    assert not later.at_risk and a.store.credential(EBID_CREDENTIAL) == new_creds


async def test_the_loop_registers_again_within_the_spread_not_the_status_interval(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    await make_at_risk(tmp_path, running, http, clock, [a])
    results: list[tuple[object, float]] = []
    loop = asyncio.create_task(a.client.run_ebid(lambda result, delay: results.append((result, delay))))
    try:
        assert await until(lambda: len(results) == 1, 30)
        erased, delay = results[0]
        assert isinstance(erased, wire.RiskVerdict) and erased.must_register_again
        assert 0 <= delay <= a.client.settings.reregister_spread_seconds < a.client.settings.status_interval_seconds
        assert a.ring.ebid_periods_left(clock.now()) == 0  # nothing to advertise until then
        await clock.advance(delay)
        assert await until(lambda: len(results) == 2, 30)
        again, next_delay = results[1]
        assert isinstance(again, wire.RiskVerdict) and not again.at_risk
        assert next_delay >= a.client.settings.status_interval_seconds  # back to the ordinary pace
        assert a.ring.ebid_periods_left(clock.now()) > 0
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_a_device_the_backend_forgot_registers_again_with_its_capability(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    old = a.store.credential(EBID_CREDENTIAL)
    await clock.advance((a.client.settings.retention_days + 1) * 86_400)  # switched off for over two weeks
    running.backend.maintain()
    assert running.backend.store.registration_by_client(str((old or {})["client_id"])) is None  # purged
    verdict = await a.client.ebid_round()
    assert not verdict.at_risk
    assert (a.store.credential(EBID_CREDENTIAL) or {})["client_id"] != (old or {})["client_id"]
    assert a.ring.ebid_periods_left(clock.now()) > 0


async def test_an_unexpected_unknown_client_answer_spends_no_capability(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A 401 is not signed: a device heard from yesterday that is told "unknown client" keeps its
    credentials and its capability (a forgery must not make it hold two pseudonyms)."""
    a = await registered(tmp_path, "a", running, http, clock)
    before = (a.store.credential(EBID_CREDENTIAL), a.client.capability())
    running.backend.store.purge_silent_registrations(10**9)  # the backend "forgets" it out of turn
    await clock.advance(86_400)
    with pytest.raises(Unregistered, match="no longer knows this device"):
        await a.client.ebid_round()
    assert (a.store.credential(EBID_CREDENTIAL), a.client.capability()) == before
    assert "ebid_reregistrations" not in running.backend.store.count_totals()


async def test_without_a_capability_the_round_says_a_code_is_needed(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    a.store.delete_credential(EBID_CAPABILITY)
    await make_at_risk(tmp_path, running, http, clock, [a])
    verdict = await a.client.ebid_round()
    assert verdict.at_risk and a.store.exposures()  # the verdict and its exposure are kept
    assert a.store.credential(EBID_CREDENTIAL) is None and a.ring.ebid_periods_left(clock.now()) == 0
    with pytest.raises(Unregistered, match=r"run `proxitrace register --code CODE`"):
        await a.client.ebid_round()


async def solved_challenge(http: aiohttp.ClientSession, running: RunningBackend) -> dict[str, object]:
    status, body = await post(http, f"{running.url}/v1/ebid/challenge")
    assert status == 200
    challenge = wire.parse_challenge(body)
    nonce = proof_of_work.solve(challenge.challenge, challenge.difficulty)
    return {"challenge": b64(challenge.challenge), "nonce": nonce}


def capability_body(capability: wire.Capability) -> dict[str, str]:
    return {"token": b64(capability.token), "signature": b64(capability.signature)}


async def test_a_spent_capability_is_refused_and_so_is_a_submission_token(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    spent = a.client.capability()
    assert spent is not None
    a.store.delete_credential(EBID_CREDENTIAL)
    await a.client.reregister()
    url = f"{running.url}/v1/ebid/register"

    status, body = await post(
        http, url, {**await solved_challenge(http, running), "capability": capability_body(spent)}
    )
    assert (status, body["error"]) == (403, "capability already used")

    # a submission token is blind-signed by another key: it pays for no pseudonym
    [(token, signature)] = (await buy_tokens(http, running, await issue(http, running, "tans")))[:1]
    forged = {"token": b64(token), "signature": b64(signature)}
    status, body = await post(http, url, {**await solved_challenge(http, running), "capability": forged})
    assert (status, body["error"]) == (403, "capability: invalid signature")

    both = {**await solved_challenge(http, running), "capability": capability_body(spent), "enrolmentCode": "X"}
    status, body = await post(http, url, both)
    assert (status, body["error"]) == (400, "body: expected either enrolmentCode or capability")
    assert running.backend.store.count_totals()["ebid_reregistrations"] == 1


async def test_a_refused_capability_is_dropped_and_the_device_says_it_needs_a_code(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    a = await registered(tmp_path, "a", running, http, clock)
    kept = a.store.credential(EBID_CAPABILITY)
    assert kept is not None
    a.store.delete_credential(EBID_CREDENTIAL)
    await a.client.reregister()
    a.store.set_credential(EBID_CAPABILITY, kept, clock.now())  # as if the first answer had been lost
    a.store.delete_credential(EBID_CREDENTIAL)
    with pytest.raises(Unregistered, match=r"capability already used.*proxitrace register --code"):
        await a.client.reregister()
    assert a.store.credential(EBID_CAPABILITY) is None


def snapshot(path: Path, into: Path) -> sqlite3.Connection:
    """The operator's copy of the database at this moment (with its WAL, so nothing committed is missed)."""
    into.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy(f"{path}{suffix}", into / f"{DB_FILE}{suffix}")
    return sqlite3.connect(into / DB_FILE)


def raw_bytes(path: Path) -> bytes:
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal", "-shm") if Path(f"{path}{s}").exists())


def rows_of(db: sqlite3.Connection, client_ids: set[str]) -> set[object]:
    """Every value the operator holds about the named pseudonyms: their registration rows, access tokens
    and exposures."""
    marks = ",".join("?" * len(client_ids))
    regs = db.execute(f"SELECT * FROM registrations WHERE client_id IN ({marks})", sorted(client_ids)).fetchall()
    ids = [r[0] for r in regs]
    values: set[object] = {v for r in regs for v in r}
    for table in ("access_tokens", "exposures"):
        for rid in ids:
            values |= {v for r in db.execute(f"SELECT * FROM {table} WHERE registration_id = ?", (rid,)) for v in r}
    return values


def identifying(values: set[object]) -> set[object]:
    """Blobs, strings and times identify; flags, counts, days, periods and TX powers repeat by nature, and
    so does a UTC midnight (an access token's expiry is rounded to one: every token of that day has it)."""
    return {
        v
        for v in values
        if (isinstance(v, bytes | str) and len(v) >= 8) or (isinstance(v, int | float) and v >= 1e9 and v % 86_400)
    }


@pytest.mark.sqlite_only  # copies and reads the SQLite file, rows and raw bytes; the tables are the same on PostgreSQL
async def test_the_operator_cannot_join_old_and_new_pseudonyms(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Two devices are erased and register again; the operator keeps a copy of the database after every
    step. Nothing is stored when a capability is issued, no value of an old pseudonym is a value of a new
    one, and what the backend keeps of a spent capability is in no earlier copy, not even as raw bytes."""
    path = running.backend.store.path
    copies = tmp_path / "copies"
    copies.mkdir()
    before = snapshot(path, copies / "0-before")
    devices = []
    for name in ("bob", "cem", "dee"):
        await clock.advance(137)
        devices.append(await registered(tmp_path, name, running, http, clock))
    bob, cem, dee = devices
    registered_copy = snapshot(path, copies / "1-registered")
    issued = {d.client.capability() for d in devices}
    assert None not in issued
    old_ids = {str((d.store.credential(EBID_CREDENTIAL) or {})["client_id"]) for d in (bob, cem)}

    # issuing a capability stores nothing: no row, and none of its bytes (token, signature, hash)
    for db in (before, registered_copy):
        assert db.execute("SELECT COUNT(*) FROM spent_capabilities").fetchone() == (0,)
    stored_then = raw_bytes(copies / "1-registered" / DB_FILE)
    for capability in issued:
        assert capability is not None
        for secret in (capability.token, capability.signature, hashlib.sha256(capability.token).digest()):
            assert secret not in stored_then

    await make_at_risk(tmp_path, running, http, clock, [bob, cem], reporter=dee)
    at_risk_copy = snapshot(path, copies / "2-at-risk")
    old_values = identifying(rows_of(registered_copy, old_ids) | rows_of(at_risk_copy, old_ids))
    first = {bob.client.capability(), cem.client.capability()}
    for device in (bob, cem):
        await clock.advance(611)
        assert (await device.client.ebid_round()).must_register_again
    for device in (bob, cem):
        await clock.advance(733)
        await device.client.ebid_round()  # registers again
    after = snapshot(path, copies / "3-registered-again")
    new_ids = {str((d.store.credential(EBID_CREDENTIAL) or {})["client_id"]) for d in (bob, cem)}
    assert not new_ids & old_ids and rows_of(after, old_ids) == set()  # the old pseudonyms are gone

    # no value of the new pseudonyms (or of the spent capabilities) was a value of the old ones
    spent = {bytes(h) for (h,) in after.execute("SELECT hash FROM spent_capabilities")}
    assert spent == {hashlib.sha256(c.token).digest() for c in first if c is not None}
    new_values = identifying(rows_of(after, new_ids)) | spent
    assert not old_values & new_values
    # ...nor a hash of one, nor raw bytes of any copy taken while the old pseudonyms lived
    assert not {hashlib.sha256(v).digest() for v in old_values if isinstance(v, bytes)} & spent
    for copy in ("1-registered", "2-at-risk"):
        stored = raw_bytes(copies / copy / DB_FILE)
        assert not [h for h in spent if h in stored]
    # and nothing orders the spent capabilities by the registrations they came with: one column, no time
    assert [c[1] for c in after.execute("PRAGMA table_info(spent_capabilities)")] == ["hash"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"blindedCapability": b64(b"\x01" * 16)}, "body.blindedCapability: expected 256 bytes"),
        ({"blindedCapability": "not base64!"}, "body.blindedCapability: not valid base64"),
        ({"blindedCapability": b64(b"\x01" * 513)}, "body.blindedCapability: expected at most 512 bytes"),
        (
            {"capability": {"token": b64(b"short"), "signature": b64(b"s")}},
            "body.capability.token: expected 64 bytes, got 5",
        ),
        ({"capability": "x"}, "body.capability: expected a JSON object"),
        ({"enrolmentCode": None}, "body: expected either enrolmentCode or capability"),
    ],
)
async def test_bad_registration_bodies_are_refused_in_one_line_and_spend_nothing(
    running: RunningBackend, http: aiohttp.ClientSession, change: dict[str, object], error: str
) -> None:
    code = await issue(http, running, "enrolment-codes")
    body = {**await solved_challenge(http, running), "enrolmentCode": code, **change}
    if "capability" in change:
        del body["enrolmentCode"]
    status, answer = await post(http, f"{running.url}/v1/ebid/register", body)
    assert (status, answer["error"]) == (400, error)
    good = {**await solved_challenge(http, running), "enrolmentCode": code}  # the code was not spent
    assert (await post(http, f"{running.url}/v1/ebid/register", good))[0] == 201

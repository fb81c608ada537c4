"""After a pilot day, the backend's database joins no code, TAN or token to a pseudonym or to another
submission (issue 13, item 3).

The day: six EBID devices register with enrolment codes and fetch EBIDs; a GAEN device uploads keys
with a TAN; two EBID devices are diagnosed and report with TANs what they heard (the agent's own report
path: blind-signed tokens, separate shuffled submissions, padding); the others poll their risk verdict.
Then the test opens the database file as an operator would and looks at every column of every table:
each must be one this test knows (a new column fails until it is classified here), and no value an
operator could join on — an equal blob or string, an equal time, or a time that a configured lifetime
turns into another — may appear both on the side of the one-time secrets (enrolment codes, TANs, upload
and submission tokens) and on the side of the pseudonyms (registrations, access tokens, exposures).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from support.backend_harness import DAY, T0, RunningBackend, heard
from support.sync_devices import Device, issue, make_device

from agent.clock import ManualClock
from agent.protocol import wire
from agent.schemes.base import SchemeName
from agent.server.db import DB_FILE

SECRETS = "secrets"  # a one-time secret's table: what a person was handed, or what a report spent
PSEUDONYMS = "pseudonyms"  # a registered device's pseudonym and its risk state
PUBLIC = "public"  # published or operational data that names no one

# Every column of every table, what it is and which side it belongs to. A column not listed fails the test.
COLUMNS: dict[str, tuple[str, dict[str, str]]] = {
    "meta": (PUBLIC, {"name": "key name", "value": "server keys (signing, federation, submission keys by type)"}),
    "tans": (
        SECRETS,
        {"hash": "SHA-256", "expires": "set at issue", "onset_day": "officer's", "spent": "flag", "report_type": ""},
    ),
    "upload_tokens": (
        SECRETS,
        {
            "hash": "SHA-256",
            "expires": "exchange + TTL",
            "onset_day": "TAN",
            "fake": "flag",
            "spent": "flag",
            "report_type": "TAN",
        },
    ),
    "enrolment_codes": (SECRETS, {"hash": "SHA-256", "expires": "end of a UTC day", "spent": "flag"}),
    "spent_submission_tokens": (SECRETS, {"hash": "SHA-256 of a spent blind-signed token"}),
    "spent_capabilities": (SECRETS, {"hash": "SHA-256 of a spent blind-signed re-registration capability"}),
    "challenges": (PUBLIC, {"challenge": "random", "expires": "issue + TTL"}),
    # a guess (a wrong TAN, code or token; a registration challenge asked for), kept for the limit's hour
    # under a daily key of the address; counted on the secrets' side: the guesses are at secrets
    "failed_guesses": (
        SECRETS,
        {"id": "row number", "key": "HMAC(HMAC(in-memory secret, day), limiter, address)", "at": "when"},
    ),
    "published_keys": (
        PUBLIC,
        {
            "scheme": "",
            "key_data": "published",
            "rolling_start": "",
            "rolling_period": "",
            "risk_level": "",
            "report_type": "",
            "days_since_onset": "",
            "tag_ms": "release bucket",
        },
    ),
    "registrations": (
        PSEUDONYMS,
        {
            "id": "random",
            "client_id": "random",
            "secret_hash": "SHA-256",
            "puid": "random",
            "poll_day": "UTC day",
            "polls": "count",
            "seen_day": "UTC day",
            "tx_power": "declared dBm",
        },
    ),
    "access_tokens": (PSEUDONYMS, {"hash": "SHA-256", "registration_id": "", "expires": "poll + TTL"}),
    "broadcast_keys": (PUBLIC, {"period": "", "key": "BK_t"}),
    "exposures": (
        PSEUDONYMS,
        {
            "registration_id": "",
            "period": "",
            "time": "first heard",
            "scans": "JSON",
            "report_type": "its token key's type: every reporter of that type shares it",
        },
    ),
    # the health authority's portal: who issued which TAN, to whom (a note), when. Counted on the secrets'
    # side: an operator who knows who got each TAN must still not reach a pseudonym through them.
    "officers": (
        SECRETS,
        {
            "id": "",
            "name": "officer",
            "password_hash": "Argon2id",
            "totp_secret": "",
            "disabled": "flag",
            "failures": "count",
            "locked_until": "lock end",
            "totp_last_step": "TOTP step",
            "created": "",
        },
    ),
    "officer_sessions": (SECRETS, {"hash": "SHA-256", "officer_id": "", "expires": "login + TTL"}),
    "api_tokens": (SECRETS, {"hash": "SHA-256", "officer_id": "", "created": ""}),
    "audit_log": (SECRETS, {"id": "", "day": "UTC day", "actor": "officer", "action": "", "detail": "TAN id, type"}),
    "issued_tans": (
        SECRETS,
        {
            "id": "",
            "tan_hash": "tans.hash",
            "officer": "",
            "issued_hour": "hour",
            "expires": "tans.expires",
            "report_type": "",
            "note": "officer's",
            "state": "",
        },
    ),
    "daily_counts": (PUBLIC, {"day": "UTC day", "name": "", "count": ""}),
    "federation_seen": (PUBLIC, {"id": "peer message id", "received": ""}),
    "outbox": (
        PUBLIC,
        {"id": "", "country_code": "", "body": "", "attempts": "", "created": "", "next_attempt": ""},
    ),
}
TIME_FLOOR = 1e9  # a number this large is a time (seconds since 1970)
TOLERANCE = 2.0  # seconds: a derived time this close to another joins them


async def _pilot_day(tmp_path: Path, rb: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock) -> int:
    """The day; returns the number of submissions the two reports made."""
    names = ["ann", "bob", "cem", "dee", "eli", "fay"]
    devices: dict[str, Device] = {n: make_device(tmp_path, n, rb.url, rb, http, clock, SchemeName.EBID) for n in names}
    # natural timing: each person is handed a code at the desk (an audit entry) and registers at once, and
    # the next thing the operator does is issue a TAN, in the same instant as the last registration
    for device in devices.values():
        await clock.advance(137)
        await device.client.register(await issue(http, rb, "enrolment-codes"))
    gaen = make_device(tmp_path, "gus", rb.url, rb, http, clock, SchemeName.GAEN)
    gaen.ring.ensure(T0 - DAY)
    keys = gaen.client.report_keys(SchemeName.GAEN, None, clock.now())
    await gaen.client.report(SchemeName.GAEN, await issue(http, rb, "tans"), None, keys)
    met = clock.now() + 300
    # ann meets bob closely and cem briefly; fay meets cem and dee briefly (too short to be at risk)
    for reporter, contact, minutes in (("ann", "bob", 25), ("ann", "cem", 4), ("fay", "cem", 3), ("fay", "dee", 5)):
        heard_at = met + 60 * names.index(contact) + 600 * (reporter == "fay")
        devices[reporter].store.add_windows(heard(devices[contact].ring.scheme(), heard_at, minutes=minutes, rssi=-50))
    await clock.advance(3600)
    submissions = 0
    for reporter in ("ann", "fay"):
        tan = await issue(http, rb, "tans")
        await clock.advance(411)
        contacts = devices[reporter].client.ebid_contacts(None, clock.now(), 0.0)
        assert contacts
        await devices[reporter].client.report_ebid(tan, contacts)
        submissions += wire.SUBMISSION_TOKEN_BATCH * -(-len(contacts) // wire.SUBMISSION_TOKEN_BATCH)
        await clock.advance(97)
    verdicts = {n: await devices[n].client.ask_risk_verdict() for n in ("bob", "cem", "dee", "eli")}
    assert verdicts["bob"].at_risk and not verdicts["cem"].at_risk and not verdicts["dee"].at_risk
    return submissions


def _tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in names}


def _values(db: sqlite3.Connection, table: str, columns: list[str]) -> list[object]:
    return [v for row in db.execute(f"SELECT {', '.join(columns)} FROM {table}") for v in row if v is not None]


def _day_boundary(value: float) -> bool:
    """A UTC midnight names only a day, which every code or token of that day shares (the test asserts
    which columns hold only such values)."""
    return value % DAY == 0


def _joinable(value: object) -> bool:
    """Flags, counts, days and periods repeat by nature; blobs, strings and times identify."""
    if isinstance(value, bytes | str):
        return len(value) >= 8
    return isinstance(value, float | int) and value >= TIME_FLOOR and not _day_boundary(value)


def _times(values: list[object]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and v >= TIME_FLOOR and not _day_boundary(v)]


@pytest.mark.sqlite_only  # reads the schema from sqlite_master; PostgreSQL gets the same tables and columns
async def test_the_store_joins_no_secret_to_a_pseudonym_or_a_submission(
    tmp_path: Path, running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    submissions = await _pilot_day(tmp_path, running, http, clock)
    path = running.backend.store.path
    assert path.name == DB_FILE
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = _tables(db)

    # every column is one this test knows; the secrets' tables keep no time of use
    unknown = {f"{t}.{c}" for t, cols in tables.items() for c in cols if c not in COLUMNS.get(t, ("", {}))[1]}
    assert not unknown, f"classify these columns in COLUMNS first: {sorted(unknown)}"
    assert "source" not in tables["exposures"] and "reported" not in tables["exposures"]
    assert "created" not in tables["registrations"]

    side: dict[str, list[object]] = {SECRETS: [], PSEUDONYMS: []}
    for table, cols in tables.items():
        kind = COLUMNS[table][0]
        if kind in side:
            side[kind].extend(_values(db, table, cols))

    # no shared identifier: no blob, string or time appears on both sides
    shared = {v for v in side[SECRETS] if _joinable(v)} & {v for v in side[PSEUDONYMS] if _joinable(v)}
    assert not shared

    # no derivable time: a secret's time plus or minus any configured lifetime (or none) is no pseudonym's
    # time; the pseudonym side includes every scan time inside the exposures' JSON
    config = running.backend.config
    lifetimes = {
        0,
        config.upload.token_ttl_seconds,
        config.tan.valid_seconds,
        config.ebid.enrolment_valid_seconds,
        config.ebid.access_token_ttl_seconds,
        config.ebid.challenge_ttl_seconds,
    }
    scan_times = [
        s.time
        for (scans,) in db.execute("SELECT scans FROM exposures")
        for s in wire.parse_scans(json.loads(scans), "scans")
    ]
    pseudonym_times = _times(side[PSEUDONYMS]) + scan_times
    for secret_time, lifetime, sign in itertools.product(_times(side[SECRETS]), lifetimes, (1, -1)):
        derived = secret_time + sign * lifetime
        close = [t for t in pseudonym_times if abs(t - derived) <= TOLERANCE]
        assert not close, f"a secret's time {secret_time} ± {lifetime} s lands on a pseudonym's time {close}"

    # enrolment codes and tokens expire at the end of a UTC day, TANs on the hour: no expiry gives the
    # moment of issue; the audit log keeps days, not times
    for table in ("enrolment_codes", "upload_tokens", "access_tokens"):
        expiries = [e for (e,) in db.execute(f"SELECT expires FROM {table}")]
        assert expiries and all(_day_boundary(e) for e in expiries), table
    assert all(e % 3600 == 0 for (e,) in db.execute("SELECT expires FROM tans UNION SELECT expires FROM issued_tans"))
    assert "time" not in tables["audit_log"]
    # every bought token was spent exactly once, remembered by a hash that is no hash of anything else stored
    spent = [bytes(h) for (h,) in db.execute("SELECT hash FROM spent_submission_tokens")]
    assert len(spent) == len(set(spent)) == submissions
    others = {bytes(v) for v in side[PSEUDONYMS] + side[SECRETS] if isinstance(v, bytes)} - set(spent)
    assert not {hashlib.sha256(v).digest() for v in others} & set(spent)

    # exposures: nothing groups one report's rows; rows are stored in key order, not arrival order
    exposures = db.execute("SELECT registration_id, period, time, scans FROM exposures").fetchall()
    assert len(exposures) >= 3  # cem (from ann and from fay) and dee: bob's were erased with his pseudonym
    assert exposures == sorted(exposures)
    for column in range(1, 4):  # no value repeats across rows (it would be a marker grouping a report's rows)
        values = [row[column] for row in exposures if _joinable(row[column])]
        assert len(values) == len(set(values))
    # an exposure's report type is one of the three a TAN can carry, a category every reporter of that type
    # shares (the key its token verified under), never a value of its own
    assert {t for (t,) in db.execute("SELECT report_type FROM exposures")} <= {int(t) for t in wire.REPORT_TYPES}
    ids = [r[0] for r in db.execute("SELECT id FROM registrations")]
    assert min(ids) > 2**32  # random, not a counter that tells the order people registered in

"""Accounts, sessions, CSRF and the audit log, over a real SQLite store; TOTP against RFC 6238's own
test vectors."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sqlite3
from pathlib import Path

import pyotp
import pytest

from agent.server import tables
from agent.server.db import DB_FILE, SCHEMA_VERSION, ServerStore
from agent.server.portal import csrf
from agent.server.portal.accounts import (
    AccountError,
    Accounts,
    LoginPolicy,
    Verdict,
    judge,
    password_matches,
    totp_step,
)
from agent.server.portal.audit import Action, Audit, to_csv
from agent.server.portal.sessions import Sessions, sign, unsign
from agent.server.portal.store import Officer, PortalStore

T0 = 1_763_978_400.0
POLICY = LoginPolicy(max_failures=3, lockout_seconds=600)

# RFC 6238 appendix B: the seeds are ASCII "1234567890" repeated to the hash's length, 8-digit codes.
RFC6238_SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


def b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode()


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_library_gives_rfc6238_appendix_b_codes(t: int, sha1: str, sha256: str, sha512: str) -> None:
    for name, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        totp = pyotp.TOTP(b32(RFC6238_SEEDS[name]), digits=8, digest=getattr(hashlib, name))
        assert totp.at(t) == expected, name


@pytest.mark.parametrize(("t", "sha1"), [(v[0], v[1]) for v in RFC6238])
def test_login_code_check_accepts_the_rfc_code_of_its_step_and_its_neighbours_only(t: int, sha1: str) -> None:
    secret = b32(RFC6238_SEEDS["sha1"])
    six = sha1[-6:]  # a 6-digit code is the same truncated value mod 10^6
    assert totp_step(secret, six, t) == t // 30
    assert totp_step(secret, six, t + 30) == t // 30  # one step of clock drift
    assert totp_step(secret, six, t + 90) is None
    assert totp_step(secret, "abcdef", t) is None


def officer(**changes: object) -> Officer:
    base = Officer(1, "ann", "", None, False, 0, 0.0, -1)
    return Officer(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_judge_locks_after_the_limit_and_refuses_even_the_right_password_while_locked() -> None:
    o = officer()
    for expected_failures in (1, 2):
        j = judge(o, T0, False, True, POLICY)
        assert (j.verdict, j.failures, j.locked_until) == (Verdict.WRONG, expected_failures, 0.0)
        o = officer(failures=j.failures)
    third = judge(o, T0, True, False, POLICY)  # right password, wrong code: still a failure
    assert (third.verdict, third.failures, third.locked_until) == (Verdict.WRONG, 0, T0 + 600)
    locked = officer(locked_until=third.locked_until)
    assert judge(locked, T0 + 599, True, True, POLICY).verdict is Verdict.LOCKED
    assert judge(locked, T0 + 600, True, True, POLICY).verdict is Verdict.OK
    assert judge(officer(disabled=True), T0, True, True, POLICY).verdict is Verdict.DISABLED
    assert judge(officer(failures=2), T0, True, True, POLICY).failures == 0


@pytest.fixture
def store(tmp_path: Path) -> PortalStore:
    return PortalStore(tmp_path / DB_FILE)


def test_accounts_hash_with_argon2id_and_a_code_works_once(store: PortalStore) -> None:
    accounts = Accounts(store, POLICY)
    creds = accounts.add("  Ann Officer ", True, T0)
    assert creds.name == "Ann Officer" and creds.totp_secret and len(creds.password) >= 16
    stored = store.officer("Ann Officer")
    assert (
        stored is not None
        and stored.password_hash.startswith("$argon2id$")
        and creds.password not in stored.password_hash
    )
    assert password_matches(stored.password_hash, creds.password) and not password_matches(stored.password_hash, "x")
    code = pyotp.TOTP(creds.totp_secret).at(T0)
    assert accounts.login("Ann Officer", creds.password, code, T0)[0] is Verdict.OK
    assert accounts.login("Ann Officer", creds.password, code, T0 + 1)[0] is Verdict.WRONG  # replayed code
    assert accounts.login("nobody", creds.password, code, T0)[0] is Verdict.WRONG
    with pytest.raises(AccountError, match="exists"):
        accounts.add("Ann Officer", False, T0)
    with pytest.raises(AccountError, match="control characters"):
        accounts.add("bad\x1bname", False, T0)
    with pytest.raises(AccountError, match="no officer 'ghost'"):
        accounts.reset("ghost", False)


def test_lockout_persists_and_reset_lifts_it(store: PortalStore) -> None:
    accounts = Accounts(store, POLICY)
    creds = accounts.add("bob", False, T0)
    for _ in range(3):
        assert accounts.login("bob", "guess", "", T0)[0] is Verdict.WRONG
    assert accounts.login("bob", creds.password, "", T0 + 1)[0] is Verdict.LOCKED
    fresh = accounts.reset("bob", False)
    assert accounts.login("bob", creds.password, "", T0 + 2)[0] is Verdict.WRONG  # the old password is gone
    assert accounts.login("bob", fresh.password, "", T0 + 3)[0] is Verdict.OK


def test_sessions_are_signed_server_side_and_end_on_disable(store: PortalStore, tmp_path: Path) -> None:
    accounts = Accounts(store, POLICY)
    accounts.add("cy", False, T0)
    cy = store.officer("cy")
    assert cy is not None
    key = b"k" * 32
    sessions = Sessions(store, key, 3600)
    cookie = sessions.start(cy, T0)
    assert unsign(key, cookie) is not None and unsign(b"other" * 8, cookie) is None
    token = unsign(key, cookie) or ""
    assert unsign(key, token + ".forged") is None and unsign(key, sign(key, token)[:-1]) is None
    assert sessions.officer(cookie, T0 + 10) == cy
    assert sessions.officer(cookie, T0 + 3600) is None  # expired
    assert sessions.officer(sign(key, "made-up-token"), T0) is None  # signed, but no such session
    token_hash_rows = sqlite3.connect(tmp_path / DB_FILE).execute("SELECT hash FROM officer_sessions").fetchall()
    assert token.encode() not in [bytes(r[0]) for r in token_hash_rows]  # only the hash is kept
    api = accounts.new_api_token("cy", T0)
    assert accounts.by_api_token(api) == cy
    accounts.disable("cy")
    assert sessions.officer(cookie, T0 + 10) is None and accounts.by_api_token(api) is None
    with pytest.raises(AccountError, match="disabled"):
        accounts.new_api_token("cy", T0)


def test_csrf_token_is_bound_to_its_cookie() -> None:
    key = b"k" * 32
    token = csrf.token_for(key, "session-a")
    assert csrf.valid(key, "session-a", token)
    assert not csrf.valid(key, "session-b", token)
    assert not csrf.valid(key, "session-a", "")
    assert not csrf.valid(key, None, token)
    assert not csrf.valid(b"x" * 32, "session-a", token)


def test_audit_log_is_append_only_and_its_csv_is_not_a_formula(store: PortalStore, tmp_path: Path) -> None:
    audit = Audit(store)
    audit.record(T0, '=HYPERLINK("http://evil")', Action.LOGIN)
    audit.record(T0 + 60, "ann", Action.TAN_ISSUED, "#1, confirmed test, valid 1440 min")
    rows = list(csv.reader(io.StringIO(to_csv(audit.entries()))))
    assert rows[0] == ["id", "date_utc", "actor", "action", "detail"]
    assert rows[1][2] == '\'=HYPERLINK("http://evil")' and rows[1][3] == "login"
    # the day only: the moment an officer handed out a TAN must not be kept (issue 13)
    assert rows[2][1:] == ["2025-11-24", "ann", "TAN issued", "#1, confirmed test, valid 1440 min"]
    db = sqlite3.connect(tmp_path / DB_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit_log")
    assert [e.actor for e in audit.entries()] == ["ann", '=HYPERLINK("http://evil")']


def test_a_version_1_store_gains_the_later_tables_and_columns_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / DB_FILE
    db = sqlite3.connect(path)
    db.executescript(tables.SCHEMA)
    db.execute("INSERT INTO tans (hash, expires, onset_day, used) VALUES (?, ?, NULL, NULL)", (b"h" * 32, T0 + 3600))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    migrated = ServerStore(path)
    assert migrated.tan_states(T0) == {b"h" * 32: "open"}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(registrations)")}
    assert {"tx_power", "seen_day"} <= columns
    assert "report_type" in {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(exposures)")}
    migrated.count("uploads", T0)
    assert migrated.count_totals() == {"uploads": 1}

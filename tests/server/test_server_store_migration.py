"""A schema-3 store (with use times, a registration time and report ids) opens as the current schema
with what it held kept: spent flags for use times, exposures without report id or report time, no
registration time (step 4), its TANs and upload tokens confirmed tests (step 5); a schema-6 store's audit
log keeps days and its expiries are rounded (step 7); a schema-7 store's exposures are confirmed tests (the
one submission key there was) and new ones keep the report type of their token's key (step 8)."""

import json
import sqlite3
from pathlib import Path

import pytest

from agent.protocol import wire
from agent.schemes.published import ReportType
from agent.server import tables
from agent.server.database import Engine, EngineSql
from agent.server.db import Exposure, RedeemedTan, ServerStore, Spent

_SCANS = json.dumps(wire.scans_body((wire.ScanRecord(1.7e9, 50, 45),)))


def _schema_3_store(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(path)
    old.executescript(tables.SCHEMA)
    for step in tables.MIGRATIONS[:2]:
        for statement in step:
            old.execute(statement.text(Engine.SQLITE) if isinstance(statement, EngineSql) else statement)
    old.executescript(
        "INSERT INTO tans VALUES (x'01', 2e9, NULL, 1.7e9);"
        "INSERT INTO tans VALUES (x'02', 2e9, NULL, NULL);"
        "INSERT INTO upload_tokens VALUES (x'06', 2e9, NULL, 0, 1.7e9);"
        "INSERT INTO enrolment_codes VALUES (x'03', 2e9, 1.7e9);"
        "INSERT INTO registrations (id, client_id, secret_hash, puid, created, tx_power, seen_day) "
        "VALUES (5, 'c', x'04', x'05', 1.7e9, -8, 19675);"
        f"INSERT INTO exposures VALUES (5, 'report-1', 7, 1.7e9, '{_SCANS}', 1.70001e9);"
        f"INSERT INTO exposures VALUES (5, 'report-2', 7, 1.7e9, '{_SCANS}', 1.70002e9);"
        "INSERT INTO issued_tans (tan_hash, officer, issued_hour, expires, report_type, note) "
        "VALUES (x'01', 'ann', 1.7e9, 2e9, 'confirmed test', '');"
        "PRAGMA user_version=3;"
    )
    old.commit()
    old.close()


def test_schema_3_store_migrates_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "backend" / tables.DB_FILE
    _schema_3_store(path)
    store = ServerStore(path)
    assert store.spend_tan(b"\x01", 1.8e9) is Spent.USED
    assert store.spend_tan(b"\x02", 1.8e9) == RedeemedTan(None, 1)  # an old TAN was a confirmed test
    assert store.upload_token(b"\x06", 1.8e9) is Spent.USED
    assert store.enrolment_code(b"\x03", 1.8e9) is Spent.USED
    assert store.registration(5) is not None and store.registration(5).tx_power == -8  # type: ignore[union-attr]
    [exposure] = store.exposures_of(5)  # two rows that differed only in report id and time are one
    assert exposure.report_type is ReportType.CONFIRMED_TEST
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == tables.SCHEMA_VERSION == 9
    columns = {
        t: {c[1] for c in db.execute(f"PRAGMA table_info({t})")}
        for t in ("exposures", "registrations", "tans", "upload_tokens", "enrolment_codes", "spent_capabilities")
    }
    assert columns["spent_capabilities"] == {"hash"}  # step 6: a spent capability's hash and nothing else
    assert columns["exposures"] == {"registration_id", "period", "time", "scans", "report_type"}
    assert "created" not in columns["registrations"] and {"tx_power", "seen_day"} <= columns["registrations"]
    assert all("used" not in columns[t] and "spent" in columns[t] for t in ("tans", "upload_tokens", "enrolment_codes"))
    assert db.execute("SELECT registration_id, period, time FROM exposures").fetchall() == [(5, 7, 1.7e9)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_migrated_store_reopens_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "backend" / tables.DB_FILE
    _schema_3_store(path)
    ServerStore(path).close()
    before = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    ServerStore(path).close()
    assert sqlite3.connect(path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == before


_NOON = 1_763_985_600.5  # 2025-11-24 12:00:00.5 UTC: a time with a fraction, inside an hour and a day


def _schema_6_store(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(path)
    old.executescript(tables.SCHEMA)
    for step in tables.MIGRATIONS[:5]:
        for statement in step:
            old.execute(statement.text(Engine.SQLITE) if isinstance(statement, EngineSql) else statement)
    old.executescript(
        f"INSERT INTO audit_log (time, actor, action, detail) VALUES ({_NOON}, 'ann', 'TAN issued', '#1');"
        f"INSERT INTO audit_log (time, actor, action, detail) VALUES ({_NOON + 86_400}, 'bob', 'login', '');"
        f"INSERT INTO tans (hash, expires, onset_day) VALUES (x'01', {_NOON + 86_400}, NULL);"
        "INSERT INTO issued_tans (tan_hash, officer, issued_hour, expires, report_type, note) "
        f"VALUES (x'01', 'ann', {_NOON - 0.5}, {_NOON + 86_400}, 'confirmed test', '');"
        f"INSERT INTO upload_tokens (hash, expires, onset_day, fake) VALUES (x'02', {_NOON + 600}, NULL, 0);"
        "INSERT INTO registrations (id, client_id, secret_hash, puid) VALUES (5, 'c', x'04', x'05');"
        f"INSERT INTO access_tokens VALUES (x'03', 5, {_NOON + 900});"
        "PRAGMA user_version=6;"
    )
    old.commit()
    old.close()


def test_schema_6_store_keeps_audit_days_and_rounded_expiries(tmp_path: Path) -> None:
    path = tmp_path / "backend" / tables.DB_FILE
    _schema_6_store(path)
    ServerStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == tables.SCHEMA_VERSION
    assert {c[1] for c in db.execute("PRAGMA table_info(audit_log)")} == {"id", "day", "actor", "action", "detail"}
    day = int(_NOON // 86_400)
    assert db.execute("SELECT id, day, actor FROM audit_log ORDER BY id").fetchall() == [
        (1, day, "ann"),
        (2, day + 1, "bob"),
    ]
    hour_after = _NOON - 0.5 + 3600 + 86_400  # the TAN's exact expiry, rounded up to the next hour
    assert db.execute("SELECT expires FROM tans").fetchone()[0] == hour_after
    assert db.execute("SELECT expires FROM issued_tans").fetchone()[0] == hour_after
    day_end = (day + 1) * 86_400
    assert db.execute("SELECT expires FROM upload_tokens").fetchone()[0] == day_end
    assert db.execute("SELECT expires FROM access_tokens").fetchone()[0] == day_end
    # the rebuilt log is still append-only
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit_log")


def test_schema_7_store_keeps_its_exposures_as_confirmed_tests_and_new_ones_keep_their_type(tmp_path: Path) -> None:
    path = tmp_path / "backend" / tables.DB_FILE
    path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(path)
    old.executescript(tables.SCHEMA)
    for step in tables.MIGRATIONS[:6]:
        for statement in step:
            old.execute(statement.text(Engine.SQLITE) if isinstance(statement, EngineSql) else statement)
    old.executescript(
        "INSERT INTO registrations (id, client_id, secret_hash, puid) VALUES (5, 'c', x'04', x'05');"
        f"INSERT INTO exposures VALUES (5, 7, 1.7e9, '{_SCANS}');"
        "PRAGMA user_version=7;"
    )
    old.commit()
    old.close()
    store = ServerStore(path)
    scans = wire.parse_scans(json.loads(_SCANS), "scans")
    assert store.exposures_of(5) == [Exposure(7, 1.7e9, scans, ReportType.CONFIRMED_TEST)]
    self_reported = Exposure(8, 1.8e9, scans, ReportType.SELF_REPORT)
    assert store.accept_forward("1:m", 1.8e9, [(5, self_reported)])
    assert store.exposures_of(5) == [Exposure(7, 1.7e9, scans, ReportType.CONFIRMED_TEST), self_reported]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == tables.SCHEMA_VERSION
    assert db.execute("SELECT period, report_type FROM exposures ORDER BY period").fetchall() == [(7, 1), (8, 3)]

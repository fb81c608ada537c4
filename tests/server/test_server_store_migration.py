"""A schema-1 store (with use times and report ids) opens as schema 2 with what it held kept: spent
flags for use times, exposures without report id or report time, no registration time."""

import sqlite3
from pathlib import Path

from agent.server import db as store_module
from agent.server.db import ServerStore, Spent


def test_schema_1_store_migrates_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "backend" / store_module.DB_FILE
    path.parent.mkdir(mode=0o700)
    old = sqlite3.connect(path)
    old.executescript(store_module._MIGRATIONS[0])
    old.executescript(
        "INSERT INTO tans VALUES (x'01', 2e9, NULL, 1.7e9);"
        "INSERT INTO tans VALUES (x'02', 2e9, NULL, NULL);"
        "INSERT INTO enrolment_codes VALUES (x'03', 2e9, 1.7e9);"
        "INSERT INTO registrations (id, client_id, secret_hash, puid, created) VALUES (5, 'c', x'04', x'05', 1.7e9);"
        "INSERT INTO exposures VALUES (5, 'report-1', 7, 1.7e9, '[]', 1.70001e9);"
        "PRAGMA user_version=1;"
    )
    old.commit()
    old.close()
    store = ServerStore(path)
    assert store.spend_tan(b"\x01", 1.8e9) is Spent.USED
    assert store.spend_tan(b"\x02", 1.8e9) is None
    assert store.enrolment_code(b"\x03", 1.8e9) is Spent.USED
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 2
    columns = {t: {c[1] for c in db.execute(f"PRAGMA table_info({t})")} for t in ("exposures", "registrations")}
    assert columns["exposures"] == {"registration_id", "period", "time", "scans"}
    assert "created" not in columns["registrations"]
    assert db.execute("SELECT registration_id, period, time FROM exposures").fetchall() == [(5, 7, 1.7e9)]

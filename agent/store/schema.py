"""The agent database's layout: the file name, how schemes are coded on disk, the migration steps and the
sightings UPSERT.

Why it exists: the schema is the one thing every part of the store agrees on (the aggregator drains rows in
the UPSERT's column order, the store migrates and queries by it), so it lives once, apart from the code that
opens, writes or repairs the file.
"""

from __future__ import annotations

from agent.schemes.base import SchemeName

DB_FILE = "agent.db"
SCHEME_CODES = {SchemeName.DP3T: 1, SchemeName.GAEN: 2, SchemeName.EBID: 3}
SCHEMES_BY_CODE = {v: k for k, v in SCHEME_CODES.items()}

# Each step moves the schema from version i to i + 1; a database is upgraded by running the steps it lacks.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the first layout
        """CREATE TABLE sightings (
            scheme TEXT NOT NULL, id BLOB NOT NULL, window_start INTEGER NOT NULL, count INTEGER NOT NULL,
            rssi_min INTEGER NOT NULL, rssi_max INTEGER NOT NULL, rssi_sum INTEGER NOT NULL, tx_power INTEGER,
            metadata BLOB NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
            PRIMARY KEY (scheme, id, window_start))""",
        "CREATE INDEX sightings_by_window ON sightings (window_start)",
        """CREATE TABLE own_keys (
            scheme TEXT NOT NULL, kind TEXT NOT NULL, valid_from REAL NOT NULL, valid_until REAL NOT NULL,
            material BLOB NOT NULL, meta TEXT NOT NULL DEFAULT '{}')""",
        "CREATE TABLE processed_lists (sha256 TEXT PRIMARY KEY, source TEXT NOT NULL, keys INTEGER NOT NULL,"
        " processed_at REAL NOT NULL)",
        """CREATE TABLE exposures (
            day INTEGER NOT NULL, scheme TEXT NOT NULL, notify INTEGER NOT NULL, score REAL NOT NULL,
            explanation TEXT NOT NULL, computed_at REAL NOT NULL, PRIMARY KEY (day, scheme))""",
    ),
    (  # 2: compact sightings (scheme code, integer offsets, no rowid: about half the bytes), credentials
        """CREATE TABLE sightings_v2 (
            id BLOB NOT NULL, window_start INTEGER NOT NULL, scheme INTEGER NOT NULL, count INTEGER NOT NULL,
            rssi_min INTEGER NOT NULL, rssi_max INTEGER NOT NULL, rssi_sum INTEGER NOT NULL, tx_power INTEGER,
            metadata BLOB, first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
            PRIMARY KEY (id, window_start)) WITHOUT ROWID""",
        """INSERT INTO sightings_v2 SELECT id, window_start,
            CASE scheme WHEN 'dp3t' THEN 1 WHEN 'gaen' THEN 2 ELSE 3 END, count, rssi_min, rssi_max, rssi_sum,
            tx_power, metadata, CAST(first_seen - window_start AS INTEGER), CAST(last_seen - window_start AS INTEGER)
            FROM sightings""",
        "DROP TABLE sightings",
        "ALTER TABLE sightings_v2 RENAME TO sightings",
        "CREATE INDEX sightings_by_window ON sightings (window_start)",
        "CREATE TABLE credentials (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

UPSERT = """INSERT INTO sightings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id, window_start) DO UPDATE SET
        count = count + excluded.count,
        rssi_min = min(rssi_min, excluded.rssi_min),
        rssi_max = max(rssi_max, excluded.rssi_max),
        rssi_sum = rssi_sum + excluded.rssi_sum,
        tx_power = coalesce(tx_power, excluded.tx_power),
        metadata = coalesce(metadata, excluded.metadata),
        first_offset = min(first_offset, excluded.first_offset),
        last_offset = max(last_offset, excluded.last_offset)"""

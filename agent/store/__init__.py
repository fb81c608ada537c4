"""The agent's SQLite store, one face for its parts: ``from agent.store import Store`` and the rest.

Why a package: the store is several concepts that grew in one file: the layout and migrations
(``schema``), write-time aggregation with its flood cap and in-memory backlog (``aggregator``), how faults
are classified and a corrupt file moved aside (``faults``), and the store itself, which opens, writes,
queries and expires (``database``). Callers import from here and need not know the split.
"""

from agent.store.aggregator import MAX_UNWRITTEN_WINDOWS, FloodCap, SightingAggregator, hold_rows
from agent.store.database import ExposureRecord, OwnKey, Store
from agent.store.faults import CORRUPT_SUFFIX, StoreError, StoreUnusable, write_failure_cause
from agent.store.schema import DB_FILE, MIGRATIONS, SCHEMA_VERSION, SCHEME_CODES, SCHEMES_BY_CODE

__all__ = [
    "CORRUPT_SUFFIX",
    "DB_FILE",
    "MAX_UNWRITTEN_WINDOWS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SCHEMES_BY_CODE",
    "SCHEME_CODES",
    "ExposureRecord",
    "FloodCap",
    "OwnKey",
    "SightingAggregator",
    "Store",
    "StoreError",
    "StoreUnusable",
    "hold_rows",
    "write_failure_cause",
]

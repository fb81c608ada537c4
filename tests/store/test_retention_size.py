"""Once retention bites, the store's files stop growing (issue 19's "DB size flat once retention bites").

The real Store is driven through simulated days at one fixed daily volume (peers heard every minute, an ID
per peer per hour, written in the batches a daemon's flusher writes) with retention run at each day's start,
as the daemon runs it. What counts is what the disk holds: the database file plus its WAL, read after every
write. With the window full the data are the same every day, so anything that grows is the store's own doing:
before the fix the WAL file kept the size of the biggest transaction it ever held: retention's one delete and
vacuum, which rewrite about half the database.
"""

import random
import sqlite3
from pathlib import Path

from agent.clock import DAY
from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow
from agent.store import DB_FILE, Store

T0 = 1_780_012_800  # a UTC midnight
RETENTION_DAYS = 2
DAYS = 7
PEERS = 20  # all day long: about 29,000 rows a day, 2-3 MB of store
BATCH_S = 1200  # a flush's worth of windows (the soak's 2 s flush at 600x)
ALLOWED_GROWTH = 0.05


def batch(rng: random.Random, ids: list[bytes], start: int) -> list[SightingWindow]:
    return [
        SightingWindow(SchemeName.GAEN, ident, w, 2, -70, -60, -130, -8, b"\x01\x02\x03\x04", w + 10.0, w + 40.0)
        for w in range(start, start + BATCH_S, 60)
        for ident in ids
    ]


def daily_max_sizes(state: Path) -> tuple[list[int], list[int]]:
    """Drive the days; the largest DB + WAL size seen on each simulated day between retention runs, and
    the largest seen while each day's retention ran (read before every statement it executes)."""
    store = Store.open(state)
    rng = random.Random(19)
    files = [state / DB_FILE, state / (DB_FILE + "-wal")]
    daily: list[int] = []
    during_retention: list[int] = []
    ids: list[bytes] = []

    def size() -> int:
        return sum(f.stat().st_size for f in files)

    def watch(_statement: str) -> None:
        during_retention[-1] = max(during_retention[-1], size())

    try:
        for day in range(DAYS):
            during_retention.append(size())
            store.db.conn.set_trace_callback(watch)
            store.enforce_retention(T0 + day * DAY, RETENTION_DAYS)
            store.db.conn.set_trace_callback(None)
            watch("")
            biggest = size()
            for start in range(T0 + day * DAY, T0 + (day + 1) * DAY, BATCH_S):
                if start % 3600 == 0:
                    ids = [rng.randbytes(16) for _ in range(PEERS)]
                store.add_windows(batch(rng, ids, start))
                biggest = max(biggest, size())
            daily.append(biggest)
    finally:
        store.close()
    return daily, during_retention


def test_store_files_stay_flat_once_the_retention_window_is_full(tmp_path: Path) -> None:
    daily, during_retention = daily_max_sizes(tmp_path)
    first_full = daily[RETENTION_DAYS]  # the window holds RETENTION_DAYS + 1 days; retention bites next day
    print("daily max DB + WAL (MB):", [round(s / 1e6, 2) for s in daily])
    print("max DB + WAL during retention (MB):", [round(s / 1e6, 2) for s in during_retention])
    assert first_full > 1.5 * daily[0]  # the store did fill: the comparison is of a full window
    assert max(daily[RETENTION_DAYS + 1 :]) <= first_full * (1 + ALLOWED_GROWTH), [round(s / 1e6, 2) for s in daily]
    # nor does retention itself swell the files while it runs (one big delete put the table in the WAL)
    assert max(during_retention) <= first_full * (1 + ALLOWED_GROWTH), [round(s / 1e6, 2) for s in during_retention]


def test_retention_steps_leave_no_transaction_open_between_them(tmp_path: Path) -> None:
    """The daemon's loop runs a flush between two steps: each step must have committed."""
    store = Store.open(tmp_path)
    rng = random.Random(7)
    for hour in range(6):
        store.add_windows(batch(rng, [rng.randbytes(16) for _ in range(5)], T0 + hour * 3600))
    steps = []
    for deleted in store.retention_steps(T0 + 5 * 3600 + DAY, days=1):
        assert not store.db.conn.in_transaction
        steps.append(deleted)
        store.add_windows(batch(rng, [rng.randbytes(16)], T0 + DAY))  # what a flush in between would write
    assert sum(steps) == 5 * 5 * BATCH_S // 60  # the five oldest batches...
    assert sum(1 for d in steps if d) == 5  # ...an hour per transaction
    assert {w.window_start for w in store.windows()} >= {T0 + 5 * 3600, T0 + DAY}


def test_a_store_made_without_incremental_vacuum_is_converted_at_open(tmp_path: Path) -> None:
    """auto_vacuum=INCREMENTAL takes effect only through a VACUUM: a file made without it (by hand, by
    another tool) is rewritten once at open, and from then on retention shrinks it."""
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    store = Store.open(tmp_path)
    assert store.db.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    rng = random.Random(3)
    for hour in range(10):
        store.add_windows(batch(rng, [rng.randbytes(16) for _ in range(PEERS)], T0 + hour * 3600))
    pages = store.db.conn.execute("PRAGMA page_count").fetchone()[0]
    store.enforce_retention(T0 + 30 * DAY)
    assert store.db.conn.execute("PRAGMA page_count").fetchone()[0] < pages / 4

"""Once retention bites, the store's files stop growing (issue 19's "DB size flat once retention bites").

The real Store is driven through simulated days at one fixed daily volume (peers heard every minute, an ID
per peer per hour, written in the batches a daemon's flusher writes) with retention run at each day's start,
as the daemon runs it. What counts is what the disk holds: the database file plus its WAL, read after every
write. With the window full the data are the same every day, so anything that grows is the store's own doing:
before the fix the WAL kept the high-water mark of the biggest transaction (retention's delete touches nearly
every leaf of the ID-ordered table), about the whole database again.
"""

import random
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


def daily_max_sizes(state: Path) -> list[int]:
    """Drive the days; the largest DB + WAL size seen on each simulated day."""
    store = Store.open(state)
    rng = random.Random(19)
    files = [state / DB_FILE, state / (DB_FILE + "-wal")]
    daily: list[int] = []
    ids: list[bytes] = []
    try:
        for day in range(DAYS):
            store.enforce_retention(T0 + day * DAY, RETENTION_DAYS)
            biggest = sum(f.stat().st_size for f in files)
            for start in range(T0 + day * DAY, T0 + (day + 1) * DAY, BATCH_S):
                if start % 3600 == 0:
                    ids = [rng.randbytes(16) for _ in range(PEERS)]
                store.add_windows(batch(rng, ids, start))
                biggest = max(biggest, sum(f.stat().st_size for f in files))
            daily.append(biggest)
    finally:
        store.close()
    return daily


def test_store_files_stay_flat_once_the_retention_window_is_full(tmp_path: Path) -> None:
    daily = daily_max_sizes(tmp_path)
    first_full = daily[RETENTION_DAYS]  # the window holds RETENTION_DAYS + 1 days; retention bites next day
    later = daily[RETENTION_DAYS + 1 :]
    print("daily max DB + WAL (MB):", [round(s / 1e6, 2) for s in daily])
    assert max(later) <= first_full * (1 + ALLOWED_GROWTH), [round(s / 1e6, 2) for s in daily]
    assert first_full > 1.5 * daily[0]  # the store did fill: the comparison is of a full window

"""A neighbour advertising 10,000 fresh fake IDs a second, next to five real peers (one ID each, rotating every
10 min, heard every 250 ms), in simulated time through the daemon's own path (SightingAggregator → Store.flush
every 10 s). Count-based bounds, never timings: rows per minute per scheme, what the aggregator holds between
flushes, that every real peer has a row in every minute, that what is dropped is counted, and how many rows
matching reads (the bench, tests/bench/bench_flood.py, times it)."""

import os
import random
from pathlib import Path

from agent.exposure import SightingIndex
from agent.schemes.base import SchemeName
from agent.store import FloodCap, SightingAggregator, Store

T0 = 1_780_000_020  # a minute boundary
FLOOD_PER_S = 10_000
MINUTES = 3
PEERS = 5
TICK = 0.25
FLUSH_S = 10


def real_id(peer: int, t: float) -> bytes:
    return peer.to_bytes(4, "big") + int((t + peer * 97) // 600).to_bytes(12, "big")  # rotates every 10 min


def test_a_flood_of_fresh_ids_is_capped_counted_and_real_peers_keep_their_rows(tmp_path: Path) -> None:
    rng = random.Random(19)
    cap = FloodCap()
    store = Store.open(tmp_path)
    agg = SightingAggregator(cap=cap, seed=1)
    per_tick = int(FLOOD_PER_S * TICK)
    fakes = reals = 0
    most_held = 0
    for step in range(int(MINUTES * 60 / TICK)):
        t = T0 + step * TICK
        for _ in range(per_tick):  # a fresh ID every callback, as a sprayer would
            agg.add(SchemeName.GAEN, os.urandom(16), t, -70, None, b"\0\0\0\0")
        fakes += per_tick
        for peer in range(PEERS):
            agg.add(SchemeName.GAEN, real_id(peer, t), t, -55 - rng.randint(0, 5), -8, b"\x40\0\0\0")
        reals += PEERS
        if (step + 1) % int(FLUSH_S / TICK) == 0:
            most_held = max(most_held, len(agg))
            store.flush(agg)
    store.flush(agg)

    per_minute = store.db.conn.execute(
        "SELECT window_start, count(*) FROM sightings WHERE scheme = 2 GROUP BY window_start"
    ).fetchall()
    assert len(per_minute) == MINUTES
    assert all(rows <= cap.rows_per_minute + PEERS for _, rows in per_minute)
    assert most_held <= cap.rows_per_minute + PEERS  # memory between flushes: bounded by the cap, not the flood
    stored = store.db.conn.execute("SELECT sum(count) FROM sightings").fetchone()[0]
    assert stored + agg.flood_dropped == fakes + reals  # every callback is stored or counted as dropped
    assert agg.flood_dropped >= fakes - MINUTES * cap.rows_per_minute

    for minute in range(MINUTES):
        start = T0 + minute * 60
        for peer in range(PEERS):
            ids = {real_id(peer, t) for t in (start, start + 59.75)}
            heard = [w for w in store.windows_for_ids(ids) if w.window_start == start]
            assert heard, f"peer {peer} lost in minute {minute}"
            assert sum(w.count for w in heard) >= 200  # all 240 callbacks but the few before an ID proved itself

    windows = list(store.windows(scheme=SchemeName.GAEN, since=T0))
    SightingIndex(windows)  # what matching builds: its size, not its speed, is the bound asserted here
    assert len(windows) <= MINUTES * (cap.rows_per_minute + PEERS)
    store.close()


def test_a_real_peer_whose_id_rotates_mid_flood_gets_in_within_the_minute() -> None:
    agg = SightingAggregator(seed=2)
    t0 = T0 + 60 * 7 + 30.0  # mid-window: the first-come quota long gone to the sprayer
    new_id = b"\x01" * 16
    for step in range(int(30 / TICK)):
        t = t0 + step * TICK
        for _ in range(int(FLOOD_PER_S * TICK)):
            agg.add(SchemeName.GAEN, os.urandom(16), t, -70, None, b"")
        agg.add(SchemeName.GAEN, new_id, t, -55, -8, b"")
    rows = {r[0]: r for r in agg.drain()}
    assert new_id in rows and rows[new_id][3] >= int(30 / TICK) - 12  # admitted within ~3 s of its first advert

"""Write-time aggregation: raw BLE callbacks folded in memory into per-(ID, scan window) rows, the flood cap
on new IDs, and the folding of rows a failed flush keeps in memory.

Why it exists: this is the hot path (hundreds of callbacks a second in a crowd) and is pure memory, no
SQLite; keeping it apart from the store that writes the rows makes both readable. The backlog a failed
flush keeps (``hold_rows``, bounded by ``MAX_UNWRITTEN_WINDOWS``) folds exactly as the UPSERT in
``agent.store.schema`` would, so it lives with the other in-memory folding.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from agent.schemes.base import SchemeName
from agent.sightings import SCAN_WINDOW_SECONDS, RawSighting
from agent.store.schema import SCHEME_CODES

# A failed flush keeps this many (ID, window) rows in memory, folded; about 300 bytes each, so ~15 MB at the
# bound: 16 h of 50 peers heard all the time. Beyond it new windows are dropped and counted.
MAX_UNWRITTEN_WINDOWS = 50_000


@dataclass(frozen=True)
class FloodCap:
    """How many new IDs per scheme and scan window reach the store.

    A real crowd is far below ``new_per_minute`` (a packed carriage is a few hundred phones, each with one
    ID for 10-20 min); a neighbour spraying fresh IDs is far above. IDs admitted in the previous window
    always pass, so peers in range keep their rows through a flood. Past the cap a new ID passes only when
    heard a second time while it waits among ``new_per_minute`` candidates (random eviction), at most
    ``proven_per_minute`` of them: a real phone repeats its ID every few hundred ms, a sprayed ID is never
    heard again, so a peer whose ID rotates mid-flood still gets in. A window thus holds at most
    ``new_per_minute + proven_per_minute`` new rows per scheme; every callback refused is counted."""

    new_per_minute: int = 1_000
    proven_per_minute: int = 250

    @property
    def rows_per_minute(self) -> int:
        return self.new_per_minute + self.proven_per_minute


class SightingAggregator:
    """Folds raw sightings into per-(ID, window) aggregates in memory; O(1) per callback.

    Keyed by ID alone, with the window inside the entry: an ID's callbacks arrive in time order, so a
    callback for a new window closes the entry (it waits in ``_closed`` for the flush) — cheaper than a
    tuple key per callback. A late callback for an old window just makes a second entry, which the
    UPSERT merges. New IDs are admitted under ``FloodCap``; ``flood_dropped`` counts the callbacks refused.
    """

    def __init__(
        self, window_seconds: int = SCAN_WINDOW_SECONDS, cap: FloodCap = FloodCap(), seed: int | None = None
    ) -> None:
        self.window_seconds = window_seconds
        self.cap = cap
        self._pending: dict[bytes, list] = {}  # type: ignore[type-arg]
        self._closed: list[list] = []  # type: ignore[type-arg]
        self._window = -1
        self._current: set[bytes] = set()  # IDs admitted in the current window (survives a drain)
        self._known: set[bytes] = set()  # IDs admitted in the previous window: always admitted again
        self._admitted: dict[SchemeName, int] = {}
        self._promoted: dict[SchemeName, int] = {}
        self._candidates: list[bytes] = []  # new IDs past the cap, waiting to be heard again
        self._waiting: set[bytes] = set()
        self._rng = random.Random(seed)
        self.flood_dropped = 0

    def add(
        self, scheme: SchemeName, ephemeral_id: bytes, time: float, rssi: int, tx_power: int | None, metadata: bytes
    ) -> None:
        """One advert callback. Flat arguments, not a RawSighting: this runs for every callback, and
        building an object per callback would cost more than all the folding."""
        t = int(time)
        window = t - t % self.window_seconds
        e = self._pending.get(ephemeral_id)
        if e is None or e[8] != window:
            if window > self._window:
                self._new_window(window)
            if ephemeral_id not in self._current:
                if ephemeral_id not in self._known and not self._admit(scheme, ephemeral_id):
                    self.flood_dropped += 1
                    return
                self._current.add(ephemeral_id)
            if e is not None:
                self._closed.append(e)
            self._pending[ephemeral_id] = [1, rssi, rssi, rssi, tx_power, metadata, t, t, window, scheme, ephemeral_id]
            return
        e[0] += 1
        if rssi < e[1]:
            e[1] = rssi
        elif rssi > e[2]:
            e[2] = rssi
        e[3] += rssi
        if t > e[7]:
            e[7] = t

    def _new_window(self, window: int) -> None:
        """The first callback of a later window: this window's IDs become the known ones."""
        self._known, self._current = self._current, set()
        self._window = window
        self._admitted.clear()
        self._promoted.clear()
        self._candidates.clear()
        self._waiting.clear()

    def _admit(self, scheme: SchemeName, ephemeral_id: bytes) -> bool:
        limit = self.cap.new_per_minute
        admitted = self._admitted.get(scheme, 0)
        if admitted < limit:
            self._admitted[scheme] = admitted + 1
            return True
        if ephemeral_id in self._waiting:
            promoted = self._promoted.get(scheme, 0)
            if promoted >= self.cap.proven_per_minute:
                return False
            self._waiting.discard(ephemeral_id)
            self._promoted[scheme] = promoted + 1
            return True
        if len(self._candidates) < limit:
            self._candidates.append(ephemeral_id)
        else:  # O(1) random eviction; an entry already promoted may be evicted harmlessly
            i = self._rng.randrange(limit)
            self._waiting.discard(self._candidates[i])
            self._candidates[i] = ephemeral_id
        self._waiting.add(ephemeral_id)
        return False

    def add_sighting(self, s: RawSighting) -> None:
        self.add(s.scheme, s.ephemeral_id, s.time, s.rssi, s.tx_power, s.metadata)

    def close_windows(self) -> int:
        """The clock jumped: every open window is closed as it stands (its last callback is its last time
        under the old clock) and the next callback starts a fresh window whichever way time moved.
        Returns how many were open."""
        open_windows = len(self._pending)
        self._closed.extend(self._pending.values())
        self._pending = {}
        self._window = -1
        return open_windows

    def __len__(self) -> int:
        return len(self._pending) + len(self._closed)

    def drain(self) -> list[tuple[object, ...]]:
        """Rows ready for the UPSERT, emptying the buffer."""
        entries = self._closed
        entries.extend(self._pending.values())
        self._pending, self._closed = {}, []
        return [
            (e[10], e[8], SCHEME_CODES[e[9]], e[0], e[1], e[2], e[3], e[4], e[5] or None, e[6] - e[8], e[7] - e[8])
            for e in entries
        ]


def hold_rows(held: dict[tuple[bytes, int], list[object]], rows: Iterable[tuple[object, ...]]) -> int:
    """Fold rows into the in-memory backlog ``held`` as the UPSERT would; new windows past
    ``MAX_UNWRITTEN_WINDOWS`` are dropped. Returns how many were dropped."""
    dropped = 0
    for row in rows:
        key = (row[0], row[1])
        old = held.get(key)
        if old is None:
            if len(held) >= MAX_UNWRITTEN_WINDOWS:
                dropped += 1
                continue
            held[key] = list(row[2:])
            continue
        _, count, rmin, rmax, rsum, tx, meta, first, last = row[2:]
        old[1] = old[1] + count  # type: ignore[operator]
        old[2] = min(old[2], rmin)  # type: ignore[type-var]
        old[3] = max(old[3], rmax)  # type: ignore[type-var]
        old[4] = old[4] + rsum  # type: ignore[operator]
        old[5] = old[5] if old[5] is not None else tx
        old[6] = old[6] if old[6] is not None else meta
        old[7] = min(old[7], first)  # type: ignore[type-var]
        old[8] = max(old[8], last)  # type: ignore[type-var]
    return dropped

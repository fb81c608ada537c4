"""On-device matching: published keys → the IDs they generated → IDs this device heard, time-consistently.

Pure (no store, no network): the daemon loads the sighting windows once, builds a ``SightingIndex`` and
hands keys in. The hot loop is per published key, so per key we create as few Python objects as possible:
HKDF from precomputed HMAC pads, one re-keyed AES context for all of a day's IDs, written into one buffer
per batch of keys; no per-ID objects at all — a numpy bitmap over the first 64 bits of the heard IDs
filters the whole batch at C speed, and only the rare candidates are checked exactly and for time.
"""

from __future__ import annotations

import ctypes
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agent.clock import start_of_day
from agent.schemes import dp3t, gaen
from agent.schemes._crypto import hkdf16_many, hmac_sha256_many, sha256_many
from agent.schemes._fastaes import Rekeyer
from agent.schemes.base import SchemeName
from agent.schemes.published import KeyTable, PublishedKey
from agent.sightings import SightingWindow

GAEN_TOLERANCE_SECONDS = 2 * 3600  # ±12 intervals of clock drift, as GAEN allows
DP3T_TOLERANCE_SECONDS = 2 * 3600
BATCH_KEYS = 512  # keys per batch (1.1 MiB of GAEN IDs): measured faster than 128, 256 and 2048
_MIN_BITMAP_BITS = 20
_MAX_BITMAP_BITS = 28
_DAY_BYTES = dp3t.EPHIDS_PER_DAY * dp3t.EPHID_LEN
_DAY_ZEROS = bytes(_DAY_BYTES)
_GAEN_STRIDE = gaen.ROLLING_PERIOD * gaen.RPI_LEN


@dataclass(frozen=True)
class KeyMatch:
    """The sighting windows of one published key's IDs that passed the time check, with the TX power
    read from the (decrypted) metadata of those sightings, when it decrypts to something valid."""

    scheme: SchemeName
    key: PublishedKey
    windows: tuple[SightingWindow, ...]
    tx_power: int | None


@dataclass(frozen=True)
class Hit:
    """A published key generated an ID that was heard; ``lo``..``hi`` is when it may have been heard
    (its own interval or day ± tolerance), checked against the ID's windows by ``resolve``. ``position``
    is the key's place in its list (hits of one key are one match); for DP-3T ``day_key`` is that day's
    SK, which decrypts the metadata."""

    scheme: SchemeName
    key: PublishedKey
    ephemeral_id: bytes
    lo: float
    hi: float
    position: int
    day_key: bytes = b""


WindowsOf = Callable[[Sequence[bytes]], Mapping[bytes, Sequence[SightingWindow]]]
"""Gives the windows of some heard IDs: the index's own, or the store's."""


class SightingIndex:
    """The IDs heard, built once per matching run: a dict for exact look-ups and a bitmap prefilter.

    Built from windows, it holds them too; built from ``ids`` alone (a national pass: a store's two
    weeks of windows are ten times its IDs), it only says which IDs were heard, and ``resolve`` gets the
    windows of the few IDs that were hit from wherever they are kept.

    The bitmap is indexed by the top bits of each ID's first 32 bits (little-endian), sized at about 128
    bits per heard ID (2 MiB for 100 000 IDs): small enough to stay in cache (a byte per slot, 16 MiB,
    measured slower), with under 1 % false candidates; those are dropped by a vectorised search of the
    IDs' sorted first 64 bits, and only the rest reach the dict.
    """

    def __init__(self, windows: Iterable[SightingWindow], ids: Iterable[bytes] = ()) -> None:
        by_id: dict[bytes, list[SightingWindow]] = defaultdict(list)
        for w in windows:
            by_id[w.ephemeral_id].append(w)
        # Each heard ID maps to the empty tuple until windows are given: a dict of bytes and untracked
        # values is one object the garbage collector skips, where a list per ID is 100 000s of objects
        # that every full collection (in whichever thread, the event loop's too) walks while the GIL is held.
        self.by_id: dict[bytes, Sequence[SightingWindow]] = dict.fromkeys(ids, ())
        self.by_id.update(by_id)
        bits = _MIN_BITMAP_BITS
        while bits < _MAX_BITMAP_BITS and (1 << bits) < 128 * len(self.by_id):
            bits += 1
        self._shift = np.uint32(32 - bits)
        self._bitmap = np.zeros((1 << bits) // 8, dtype=np.uint8)
        self._prefixes = np.sort(np.frombuffer(b"".join(i[:8] for i in self.by_id), dtype="<u8"))
        slots = (self._prefixes & 0xFFFFFFFF).astype(np.uint32) >> self._shift
        np.bitwise_or.at(self._bitmap, slots >> 3, np.left_shift(1, slots & 7).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.by_id)

    def windows_of(self, ids: Sequence[bytes]) -> Mapping[bytes, Sequence[SightingWindow]]:
        return {i: self.by_id.get(i, ()) for i in ids}

    def candidates(self, ids: memoryview | bytes, count: int) -> list[int]:
        """Positions (in 16-byte units) among the first ``count`` IDs that pass the bitmap and whose
        first 64 bits are those of a heard ID: the bitmap's ~1 % false candidates are dropped here, in
        one vectorised look-up per batch, instead of one Python-level dict look-up each."""
        slots = np.frombuffer(ids, dtype="<u4", count=4 * count)[::4] >> self._shift
        hit = _nonzero((np.take(self._bitmap, slots >> 3) >> (slots & 7).astype(np.uint8)) & 1)
        if not len(hit):
            return []
        prefixes = np.frombuffer(ids, dtype="<u8", count=2 * count)[::2][hit]
        found = np.minimum(np.searchsorted(self._prefixes, prefixes), len(self._prefixes) - 1)
        return hit[self._prefixes[found] == prefixes].tolist()


def _nonzero(flags: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` for a mostly-zero uint8 array: the zero 8-byte words are skipped first, at a
    third of the cost of testing every byte."""
    if len(flags) % 8:
        return np.flatnonzero(flags)
    words = np.flatnonzero(flags.view(np.uint64))
    rows, cols = np.nonzero(flags.reshape(-1, 8)[words])
    return words[rows] * 8 + cols


def _consistent(windows: Sequence[SightingWindow], start: float, end: float) -> list[SightingWindow]:
    return [w for w in windows if start <= w.last_seen and w.first_seen <= end]


class Expander:
    """What expanding keys into IDs reuses from one batch of keys to the next: a Rekeyer per cipher
    with a context per key of a batch, the output buffers and the GAEN plaintext blocks. Setting these up
    costs milliseconds, as much as matching a thousand keys, so a caller matching a list chunk by chunk
    keeps one ``Expander`` for all of them (and closes it)."""

    def __init__(self, native: bool = True) -> None:
        self._native = native
        self._ecb: Rekeyer | None = None
        self._ctr: Rekeyer | None = None
        self.blocks: dict[tuple[int, int], bytes] = {}
        self._gaen_out: ctypes.Array[ctypes.c_char] | None = None
        self._dp3t_out: ctypes.Array[ctypes.c_char] | None = None

    def gaen(self) -> tuple[Rekeyer, ctypes.Array[ctypes.c_char]]:
        if self._ecb is None or self._gaen_out is None:
            self._ecb = Rekeyer("aes-128-ecb", native=self._native, slots=BATCH_KEYS)
            self._gaen_out = ctypes.create_string_buffer(BATCH_KEYS * _GAEN_STRIDE)
        return self._ecb, self._gaen_out

    def dp3t(self) -> tuple[Rekeyer, ctypes.Array[ctypes.c_char]]:
        if self._ctr is None or self._dp3t_out is None:
            self._ctr = Rekeyer("aes-256-ctr", native=self._native, slots=BATCH_KEYS)
            self._dp3t_out = ctypes.create_string_buffer(BATCH_KEYS * _DAY_BYTES)
        return self._ctr, self._dp3t_out

    def close(self) -> None:
        for aes in (self._ecb, self._ctr):
            if aes is not None:
                aes.close()
        self._ecb = self._ctr = None

    def __enter__(self) -> Expander:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def match_gaen(
    keys: Sequence[PublishedKey] | KeyTable,
    index: SightingIndex,
    tolerance: float = GAEN_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    """Keys whose RPIs were heard inside their own 10-minute interval ± tolerance."""
    return resolve(gaen_hits(keys, index, tolerance, native, progress), index.windows_of)


def gaen_hits(
    keys: Sequence[PublishedKey] | KeyTable,
    index: SightingIndex,
    tolerance: float = GAEN_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
    first_position: int = 0,
    expander: Expander | None = None,
) -> list[Hit]:
    """Every heard RPI of every key, with the time it may have been heard in (``resolve`` checks it)."""
    if not index:
        return []
    if expander is None:
        with Expander(native) as own:
            return gaen_hits(keys, index, tolerance, native, progress, first_position, own)
    if isinstance(keys, KeyTable):
        table = keys
    else:
        table = KeyTable.of([k for k in keys if 0 < k.rolling_period <= gaen.ROLLING_PERIOD], gaen.TEK_LEN)
    starts, periods = table.rolling_start, table.rolling_period
    hits: list[Hit] = []
    blocks, stride = expander.blocks, _GAEN_STRIDE
    aes, out = expander.gaen()
    view = memoryview(out).cast("B")
    for first in range(0, len(table), BATCH_KEYS):
        stop = min(len(table), first + BATCH_KEYS)
        spans = list(zip(starts[first:stop], periods[first:stop], strict=True))
        plains = list(map(blocks.get, spans))
        if None in plains:
            for span in set(spans) - blocks.keys():
                blocks[span] = gaen.padded_rpi_blocks(*span).ljust(stride, b"\0")
            plains = list(map(blocks.__getitem__, spans))
        aes.encrypt_many(hkdf16_many(table.key_bytes(first, stop), gaen.RPIK_INFO), plains, out, stride)
        for pos in index.candidates(view, (stop - first) * gaen.ROLLING_PERIOD):
            n, j = divmod(pos, gaen.ROLLING_PERIOD)
            start, period = spans[n]
            rpi = view[16 * pos : 16 * pos + 16].tobytes()
            if j < period and rpi in index.by_id:
                interval = start + j
                lo = interval * gaen.INTERVAL_SECONDS - tolerance
                hi = (interval + 1) * gaen.INTERVAL_SECONDS + tolerance
                hits.append(Hit(SchemeName.GAEN, table.key(first + n), rpi, lo, hi, first_position + first + n))
        if progress is not None:
            progress(stop - first)
    return hits


def resolve(hits: Sequence[Hit], windows_of: WindowsOf) -> list[KeyMatch]:
    """The keys whose hits have windows inside their time, one ``KeyMatch`` per key position, with the TX
    power from the first of those windows whose metadata decrypts to something valid."""
    heard = windows_of(sorted({h.ephemeral_id for h in hits}))
    per_key: dict[int, list[tuple[Hit, SightingWindow]]] = defaultdict(list)
    for hit in hits:
        windows = heard.get(hit.ephemeral_id, ())
        per_key[hit.position].extend((hit, w) for w in _consistent(windows, hit.lo, hit.hi))
    matches = []
    for pairs in per_key.values():
        if not pairs:
            continue
        hit = pairs[0][0]
        windows = tuple(w for _, w in pairs)
        if hit.scheme is SchemeName.GAEN:
            tx = _gaen_tx(gaen.aemk(hit.key.key_data), windows)
        else:
            tx = _dp3t_tx([(h.day_key, w) for h, w in pairs])
        matches.append(KeyMatch(hit.scheme, hit.key, windows, tx))
    return matches


def _gaen_tx(aemk: bytes, windows: Sequence[SightingWindow]) -> int | None:
    for w in windows:
        if len(w.metadata) == gaen.AEM_LEN:
            meta = gaen.parse_metadata(gaen.decrypt_metadata(aemk, w.ephemeral_id, w.metadata))
            if meta.major == 1:
                return meta.tx_power
    return None


def match_dp3t(
    keys: Sequence[PublishedKey] | KeyTable,
    index: SightingIndex,
    today: int,
    tolerance: float = DP3T_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    """Expand each published (SK_t, t) forward day by day up to ``today`` (a UTC day number) and keep
    EphIDs heard within their own day ± tolerance."""
    return resolve(dp3t_hits(keys, index, today, tolerance, native, progress), index.windows_of)


def dp3t_hits(
    keys: Sequence[PublishedKey] | KeyTable,
    index: SightingIndex,
    today: int,
    tolerance: float = DP3T_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
    first_position: int = 0,
    expander: Expander | None = None,
) -> list[Hit]:
    """Every heard EphID of every key's days up to ``today``, with the day it may have been heard in."""
    if not index:
        return []
    if expander is None:
        with Expander(native) as own:
            return dp3t_hits(keys, index, today, tolerance, native, progress, first_position, own)
    table = keys if isinstance(keys, KeyTable) else KeyTable.of(keys, dp3t.SK_LEN)
    hits: list[Hit] = []
    aes, out = expander.dp3t()
    view = memoryview(out).cast("B")
    zeros = [_DAY_ZEROS] * BATCH_KEYS
    for group in range(0, len(table), BATCH_KEYS):  # a batch's keys hold up to 14 batches of key-days
        owners, days, sks = _key_days(table, group, min(len(table), group + BATCH_KEYS), today)
        for first in range(0, len(sks), BATCH_KEYS):
            stop = min(len(sks), first + BATCH_KEYS)
            stream_keys = hmac_sha256_many(sks[first:stop], dp3t.BROADCAST_KEY)
            aes.encrypt_many(stream_keys, zeros[: stop - first], out, _DAY_BYTES)
            for pos in index.candidates(view, (stop - first) * dp3t.EPHIDS_PER_DAY):
                ephid = view[16 * pos : 16 * pos + 16].tobytes()
                if ephid in index.by_id:
                    m = first + pos // dp3t.EPHIDS_PER_DAY
                    lo = start_of_day(days[m]) - tolerance
                    hi = start_of_day(days[m] + 1) + tolerance
                    key = table.key(owners[m])
                    hits.append(Hit(SchemeName.DP3T, key, ephid, lo, hi, first_position + owners[m], sks[m]))
            if progress is not None:  # a key is done once its last day (today) is expanded
                progress(days[first:stop].count(today))
    return hits


def _key_days(table: KeyTable, first: int, stop: int, today: int) -> tuple[list[int], list[int], list[bytes]]:
    """(key position, day, SK of that day) for every day from each of the keys ``first``..``stop``'s own
    day up to ``today``, ordered by key then day. The work per key-day is the one SHA-256 of the chain
    (advanced for all keys of one age at once); the bookkeeping is numpy over the batch, as it cost as
    much as the HMAC itself when done with a Python tuple per key-day."""
    n, length = stop - first, table.key_length
    start_days = np.asarray(table.rolling_start[first:stop], dtype=np.int64) // gaen.ROLLING_PERIOD
    counts = np.clip(today - start_days + 1, 0, None)
    width = int(counts.max(initial=0))
    if width == 0:
        return [], [], []
    chain = np.empty((n, width, length), dtype=np.uint8)
    chain[:, 0] = np.frombuffer(table.key_data, np.uint8, n * length, first * length).reshape(n, length)
    for age in range(1, width):
        rows = np.flatnonzero(counts > age)
        prev = chain[rows, age - 1].tobytes()
        nxt = b"".join(sha256_many(prev[i : i + length] for i in range(0, len(prev), length)))
        chain[rows, age] = np.frombuffer(nxt, np.uint8).reshape(len(rows), length)
    alive = np.arange(width) < counts[:, None]
    rows, ages = np.nonzero(alive)
    flat = chain[alive].tobytes()
    sks = [flat[i : i + length] for i in range(0, len(flat), length)]
    return (rows + first).tolist(), (start_days[rows] + ages).tolist(), sks


def _dp3t_tx(hits: Sequence[tuple[bytes, SightingWindow]]) -> int | None:
    for sk, w in hits:
        if len(w.metadata) == 4:
            tx = dp3t.metadata_tx_power(dp3t.decrypt_metadata(sk, w.ephemeral_id, w.metadata))
            if tx is not None:
                return tx
    return None

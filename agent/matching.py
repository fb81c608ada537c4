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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.clock import start_of_day
from agent.schemes import dp3t, gaen
from agent.schemes._crypto import hkdf16, hmac_sha256
from agent.schemes._fastaes import Rekeyer
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow

GAEN_TOLERANCE_SECONDS = 2 * 3600  # ±12 intervals of clock drift, as GAEN allows
DP3T_TOLERANCE_SECONDS = 2 * 3600
BATCH_KEYS = 2048
_MIN_BITMAP_BITS = 20
_MAX_BITMAP_BITS = 28
_DAY_BYTES = dp3t.EPHIDS_PER_DAY * dp3t.EPHID_LEN
_DAY_ZEROS = bytes(_DAY_BYTES)


@dataclass(frozen=True)
class KeyMatch:
    """The sighting windows of one published key's IDs that passed the time check, with the TX power
    read from the (decrypted) metadata of those sightings, when it decrypts to something valid."""

    scheme: SchemeName
    key: PublishedKey
    windows: tuple[SightingWindow, ...]
    tx_power: int | None


class SightingIndex:
    """The IDs heard, built once per matching run: a dict for exact look-ups and a bitmap prefilter.

    The bitmap is indexed by the top bits of each ID's first 32 bits (little-endian), sized at about 128
    bits per heard ID (2 MiB for 100 000 IDs): small enough to stay in cache, with under 1 % false
    candidates, which the dict then rejects.
    """

    def __init__(self, windows: Iterable[SightingWindow]) -> None:
        by_id: dict[bytes, list[SightingWindow]] = defaultdict(list)
        for w in windows:
            by_id[w.ephemeral_id].append(w)
        self.by_id: dict[bytes, list[SightingWindow]] = dict(by_id)
        bits = _MIN_BITMAP_BITS
        while bits < _MAX_BITMAP_BITS and (1 << bits) < 128 * len(self.by_id):
            bits += 1
        self._shift = np.uint32(32 - bits)
        self._bitmap = np.zeros((1 << bits) // 8, dtype=np.uint8)
        if self.by_id:
            slots = np.frombuffer(b"".join(i[:4] for i in self.by_id), dtype="<u4") >> self._shift
            np.bitwise_or.at(self._bitmap, slots >> 3, np.left_shift(1, slots & 7).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.by_id)

    def candidates(self, ids: memoryview | bytes, count: int) -> list[int]:
        """Positions (in 16-byte units) among the first ``count`` IDs that pass the bitmap."""
        slots = np.frombuffer(ids, dtype="<u4", count=4 * count)[::4] >> self._shift
        hit = (self._bitmap[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1
        return np.flatnonzero(hit).tolist()


def _consistent(windows: Sequence[SightingWindow], start: float, end: float) -> list[SightingWindow]:
    return [w for w in windows if start <= w.last_seen and w.first_seen <= end]


def match_gaen(
    keys: Sequence[PublishedKey],
    index: SightingIndex,
    tolerance: float = GAEN_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    """Keys whose RPIs were heard inside their own 10-minute interval ± tolerance."""
    if not index:
        return []
    usable = [k for k in keys if len(k.key_data) == gaen.TEK_LEN and 0 < k.rolling_period <= 144]
    found: dict[int, list[SightingWindow]] = defaultdict(list)
    blocks: dict[tuple[int, int], bytes] = {}
    stride = gaen.ROLLING_PERIOD * gaen.RPI_LEN
    out = ctypes.create_string_buffer(BATCH_KEYS * stride)
    view = memoryview(out).cast("B")
    with Rekeyer("aes-128-ecb", native=native) as aes:
        for first in range(0, len(usable), BATCH_KEYS):
            batch = usable[first : first + BATCH_KEYS]
            for n, key in enumerate(batch):
                span = (key.rolling_start_interval_number, key.rolling_period)
                plain = blocks.get(span)
                if plain is None:
                    plain = blocks[span] = gaen.padded_rpi_blocks(*span).ljust(stride, b"\0")
                aes.encrypt_into(hkdf16(key.key_data, gaen.RPIK_INFO), plain, out, n * stride)
            for pos in index.candidates(view, len(batch) * gaen.ROLLING_PERIOD):
                n, j = divmod(pos, gaen.ROLLING_PERIOD)
                key = batch[n]
                if j >= key.rolling_period:
                    continue
                windows = index.by_id.get(view[16 * pos : 16 * pos + 16].tobytes())
                if windows:
                    interval = key.rolling_start_interval_number + j
                    lo = interval * gaen.INTERVAL_SECONDS - tolerance
                    hi = (interval + 1) * gaen.INTERVAL_SECONDS + tolerance
                    found[first + n].extend(_consistent(windows, lo, hi))
            if progress is not None:
                progress(len(batch))
    return [
        KeyMatch(SchemeName.GAEN, usable[n], tuple(ws), _gaen_tx(gaen.aemk(usable[n].key_data), ws))
        for n, ws in found.items()
        if ws
    ]


def _gaen_tx(aemk: bytes, windows: Sequence[SightingWindow]) -> int | None:
    for w in windows:
        if len(w.metadata) == gaen.AEM_LEN:
            meta = gaen.parse_metadata(gaen.decrypt_metadata(aemk, w.ephemeral_id, w.metadata))
            if meta.major == 1:
                return meta.tx_power
    return None


def match_dp3t(
    keys: Sequence[PublishedKey],
    index: SightingIndex,
    today: int,
    tolerance: float = DP3T_TOLERANCE_SECONDS,
    native: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    """Expand each published (SK_t, t) forward day by day up to ``today`` (a UTC day number) and keep
    EphIDs heard within their own day ± tolerance."""
    if not index:
        return []
    key_days: list[tuple[int, int, bytes]] = []  # (key position, day, SK of that day)
    for n, key in enumerate(keys):
        if len(key.key_data) != dp3t.SK_LEN:
            continue
        day, sk = key.rolling_start_interval_number // gaen.ROLLING_PERIOD, key.key_data
        while day <= today:
            key_days.append((n, day, sk))
            if day < today:
                sk = dp3t.next_day_key(sk)
            day += 1
    found: dict[int, list[tuple[bytes, SightingWindow]]] = defaultdict(list)
    out = ctypes.create_string_buffer(BATCH_KEYS * _DAY_BYTES)
    view = memoryview(out).cast("B")
    with Rekeyer("aes-256-ctr", native=native) as aes:
        for first in range(0, len(key_days), BATCH_KEYS):
            batch = key_days[first : first + BATCH_KEYS]
            for m, (_, _, sk) in enumerate(batch):
                aes.encrypt_into(hmac_sha256(sk, dp3t.BROADCAST_KEY), _DAY_ZEROS, out, m * _DAY_BYTES)
            for pos in index.candidates(view, len(batch) * dp3t.EPHIDS_PER_DAY):
                windows = index.by_id.get(view[16 * pos : 16 * pos + 16].tobytes())
                if windows:
                    n, day, sk = batch[pos // dp3t.EPHIDS_PER_DAY]
                    lo = start_of_day(day) - tolerance
                    hi = start_of_day(day + 1) + tolerance
                    found[n].extend((sk, w) for w in _consistent(windows, lo, hi))
            if progress is not None:  # a key is done once its last day (today) is expanded
                progress(sum(1 for _, day, _ in batch if day == today))
    return [
        KeyMatch(SchemeName.DP3T, keys[n], tuple(w for _, w in hits), _dp3t_tx(hits))
        for n, hits in found.items()
        if hits
    ]


def _dp3t_tx(hits: Sequence[tuple[bytes, SightingWindow]]) -> int | None:
    for sk, w in hits:
        if len(w.metadata) == 4:
            tx = dp3t.metadata_tx_power(dp3t.decrypt_metadata(sk, w.ephemeral_id, w.metadata))
            if tx is not None:
                return tx
    return None

"""Matching a streamed list over several processes finds what one process finds, and what the in-memory
path finds; a key refused in a worker refuses the whole list and stores nothing."""

from __future__ import annotations

import io
import multiprocessing
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import standard_export

from agent.clock import day_of
from agent.exposure import ExportRun, process_export, process_list
from agent.match_workers import MIN_KEYS_PER_WORKER, ChunkMatcher, match_chunks, worker_count
from agent.matching import SightingIndex
from agent.protocol.export import ExportError, SignatureInfo, verify_export, verify_export_stream
from agent.risk import RiskSettings
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow
from agent.store import Store

INFO = SignatureInfo(verification_key_id="228", verification_key_version="v1")
NOW = time.time()
TODAY = day_of(NOW)


def heard(scheme: SchemeName, ephid: bytes, t: float, metadata: bytes = b"") -> list[SightingWindow]:
    """Ten minutes of windows of one ID, close by."""
    start = int(t) - int(t) % 60
    return [
        SightingWindow(
            scheme,
            ephid,
            start + 60 * m,
            6,
            -58,
            -50,
            -324,
            None,
            metadata,
            start + 60 * m + 1.0,
            start + 60 * m + 55.0,
        )
        for m in range(10)
    ]


def gaen_case(n_keys: int, planted: int, seed: int) -> tuple[list[PublishedKey], list[SightingWindow]]:
    rng = random.Random(seed)
    keys = [PublishedKey(rng.randbytes(16), (TODAY - rng.randrange(1, 10)) * 144, 144, 3, 1, 2) for _ in range(n_keys)]
    windows = [
        w for _ in range(300) for w in heard(SchemeName.GAEN, rng.randbytes(16), NOW - rng.uniform(0, 9 * 86400))
    ]
    for k in rng.sample(range(n_keys), planted):
        key = keys[k]
        interval = key.rolling_start_interval_number + rng.randrange(144)
        rpi = gaen.rpi(gaen.rpik(key.key_data), interval)
        windows += heard(
            SchemeName.GAEN,
            rpi,
            interval * 600,
            gaen.encrypt_metadata(gaen.aemk(key.key_data), rpi, gaen.metadata(-10)),
        )
    return keys, windows


def signed(keys: list[PublishedKey], signer: ec.EllipticCurvePrivateKey) -> bytes:
    return standard_export(signer, keys, start=int(NOW) - 86400, end=int(NOW) - 3600, region="XX", signature_info=INFO)


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def hit_set(hits: list) -> list[tuple[int, bytes, float]]:
    return sorted((h.position, h.ephemeral_id, h.lo) for h in hits)


@pytest.mark.parametrize("scheme", [SchemeName.GAEN, SchemeName.DP3T])
def test_two_worker_processes_hit_what_one_process_hits(scheme: SchemeName, signer: ec.EllipticCurvePrivateKey) -> None:
    rng = random.Random(7)
    if scheme is SchemeName.GAEN:
        keys, windows = gaen_case(5000, planted=9, seed=1)
    else:
        keys = [PublishedKey(rng.randbytes(32), (TODAY - rng.randrange(0, 5)) * 144) for _ in range(2500)]
        windows = []
        for k in rng.sample(range(len(keys)), 7):
            day = keys[k].rolling_start_interval_number // 144 + rng.randrange(
                TODAY - keys[k].rolling_start_interval_number // 144 + 1
            )
            sk = dp3t.advance_key(keys[k].key_data, day - keys[k].rolling_start_interval_number // 144)
            windows += heard(scheme, rng.choice(dp3t.ephids(sk)), day * 86400 + 3600)
    data = signed(keys, signer)
    streamed = verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, key_length=len(keys[0].key_data))
    index = SightingIndex(windows)
    ids = list(index.by_id)
    matcher = ChunkMatcher(scheme, streamed.summary, TODAY)
    one = match_chunks(matcher, streamed.chunks(700), index).hits
    assert len({h.position for h in one}) == (9 if scheme is SchemeName.GAEN else 7)
    sorted_keys = sorted(keys, key=lambda k: k.key_data)  # the order build_export writes
    assert all(sorted_keys[h.position] == h.key for h in one)
    forked = match_chunks(matcher, streamed.chunks(700), index, workers=2, start_method="fork")
    assert hit_set(forked.hits) == hit_set(one) and forked.processes == 2
    if scheme is SchemeName.GAEN:  # a clean interpreter per worker, the index rebuilt from the IDs
        spawned = match_chunks(
            matcher, streamed.chunks(700), SightingIndex((), ids), ids, workers=2, start_method="spawn"
        ).hits
        assert hit_set(spawned) == hit_set(one)


def test_a_streamed_list_over_two_processes_records_what_the_in_memory_path_records(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    keys, windows = gaen_case(4000, planted=5, seed=2)
    data = signed(keys, signer)
    trusted = {"228": signer.public_key()}
    results = []
    for name in ("memory", "streamed"):
        store = Store.open(tmp_path / name)
        store.add_windows(windows)
        if name == "memory":
            verified = verify_export(data, trusted)
            outcome = process_list(
                store, SchemeName.GAEN, verified.keys, verified.export_sha256.hex(), "t", NOW, RiskSettings(), 0.0
            )
        else:
            streamed = verify_export_stream(io.BytesIO(data), trusted)
            run = ExportRun(SchemeName.GAEN, "t", NOW, RiskSettings(), 0.0, workers=2)
            outcome = process_export(store, streamed, run)
            again = process_export(store, streamed, run)
            assert again.already_processed and again.matched_keys == 0
        results.append(
            (
                outcome.sha256,
                outcome.keys,
                outcome.matched_keys,
                outcome.notify,
                [(r.day, r.score, r.explanation) for r in store.exposures()],
            )
        )
        store.close()
    assert results[0] == results[1]
    assert results[1][2] == 5


def test_a_key_refused_in_a_worker_refuses_the_list_and_stores_nothing(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    keys, windows = gaen_case(3000, planted=3, seed=3)
    future = PublishedKey(b"\xff" * 16, (TODAY + 3) * 144)  # sorts last: in the last chunk
    data = signed([*keys, future], signer)
    store = Store.open(tmp_path)
    store.add_windows(windows)
    streamed = verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, now=NOW)
    with pytest.raises(ExportError) as refused:
        process_export(store, streamed, ExportRun(SchemeName.GAEN, "t", NOW, RiskSettings(), 0.0, workers=2))
    assert refused.value.reason == f"key 3000: starts in the future (interval {(TODAY + 3) * 144})"
    assert store.exposures() == [] and not store.is_list_processed(streamed.summary.export_sha256.hex())
    store.close()


def test_no_worker_is_left_behind(signer: ec.EllipticCurvePrivateKey) -> None:
    keys, windows = gaen_case(1500, planted=1, seed=4)
    streamed = verify_export_stream(io.BytesIO(signed(keys, signer)), {"228": signer.public_key()})
    matcher = ChunkMatcher(SchemeName.GAEN, streamed.summary, TODAY)
    hits = match_chunks(matcher, streamed.chunks(300), SightingIndex(windows), workers=2).hits
    assert len({h.position for h in hits}) == 1
    assert multiprocessing.active_children() == []


def test_workers_start_only_for_lists_large_enough_to_repay_them() -> None:
    assert worker_count(MIN_KEYS_PER_WORKER - 1, 8) == 1  # a pilot's list: matched in the daemon
    assert worker_count(2 * MIN_KEYS_PER_WORKER, 8) == 2
    assert worker_count(600_000, 2) == 2  # never more than asked for
    assert worker_count(0, 0) == 1

"""Where a matched key's time goes, stage by stage, next to the fixed cost of each Python->C call the
stages cannot avoid, all measured in this run (CPU time per key, microseconds).

Run: python tests/bench/bench_match_stages.py [--keys N] [--heard M] [--repeats R]

A stage runs over the whole list batch by batch, as the matcher runs it, on the same keys and index;
``full`` is the matcher itself (gaen_hits / dp3t_hits), so full minus the sum of stages is the loop's
own bookkeeping and what the stages cost each other in cache. The call costs say what bounds the
matcher without compiled code of its own: per GAEN key four SHA-256 objects made or copied and four
digests (HKDF: extract and expand are two HMACs), and two ctypes calls (re-key, encrypt); per DP-3T
key-day two SHA-256 objects and two digests (one HMAC) and the same two ctypes calls. Compare with
floor.c's rows (tests/bench/bench_national.py runs it): the full native match is 1.2-1.7 us a key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from itertools import repeat, starmap

from agent.bench.match import TODAY, synthesize
from agent.matching import BATCH_KEYS, Expander, SightingIndex, _key_days, dp3t_hits, gaen_hits
from agent.schemes import dp3t, gaen
from agent.schemes._crypto import hkdf16_many, hmac_sha256_many
from agent.schemes._fastaes import _libcrypto
from agent.schemes.base import SchemeName
from agent.schemes.published import KeyTable


def per_key(run: Callable[[], object], keys: int, repeats: int) -> float:
    """Median CPU microseconds per key of ``run`` over ``repeats``."""
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        run()
        times.append((time.process_time() - c0) / keys * 1e6)
    return round(statistics.median(times), 3)


def batches(n: int) -> list[tuple[int, int]]:
    return [(first, min(n, first + BATCH_KEYS)) for first in range(0, n, BATCH_KEYS)]


def gaen_stages(n: int, heard: int, repeats: int) -> dict[str, float]:
    published, windows = synthesize(SchemeName.GAEN, n, heard, planted=0, seed=3)
    table, index = KeyTable.of(published, gaen.TEK_LEN), SightingIndex(windows)
    expander = Expander()
    aes, out = expander.gaen()
    view = memoryview(out).cast("B")
    stride = gaen.ROLLING_PERIOD * gaen.RPI_LEN
    plain = gaen.padded_rpi_blocks(table.rolling_start[0], gaen.ROLLING_PERIOD)
    parts = batches(n)
    teks = [table.key_bytes(a, b) for a, b in parts]
    rpiks = [hkdf16_many(k, gaen.RPIK_INFO) for k in teks]
    # a fresh AES output per batch before each look-up, as in the matcher (the index then is not all in cache)
    encrypt = [(k, [plain] * len(k)) for k in rpiks]

    def look_up() -> None:
        for k, plains in encrypt:
            aes.encrypt_many(k, plains, out, stride)
            index.candidates(view, len(k) * gaen.ROLLING_PERIOD)

    aes_only = per_key(lambda: [aes.encrypt_many(k, p, out, stride) for k, p in encrypt], n, repeats)
    result = {
        "full": per_key(lambda: gaen_hits(table, index, expander=expander), n, repeats),
        "key_bytes": per_key(lambda: [table.key_bytes(a, b) for a, b in parts], n, repeats),
        "hkdf_rpik": per_key(lambda: [hkdf16_many(k, gaen.RPIK_INFO) for k in teks], n, repeats),
        "aes_144_rpis": aes_only,
        "bitmap_and_prefix_filter": round(per_key(look_up, n, repeats) - aes_only, 3),
    }
    expander.close()
    return result


def dp3t_stages(n: int, heard: int, repeats: int) -> dict[str, float]:
    published, windows = synthesize(SchemeName.DP3T, n, heard, planted=0, seed=3)
    table, index = KeyTable.of(published, dp3t.SK_LEN), SightingIndex(windows)
    expander = Expander()
    aes, out = expander.dp3t()
    view = memoryview(out).cast("B")
    day_bytes = dp3t.EPHIDS_PER_DAY * dp3t.EPHID_LEN
    zeros = bytes(day_bytes)
    parts = batches(n)
    sks = [_key_days(table, a, b, TODAY)[2] for a, b in parts]
    stream_keys = [hmac_sha256_many(s, dp3t.BROADCAST_KEY) for s in sks]

    def look_up() -> None:
        for k in stream_keys:
            aes.encrypt_many(k, [zeros] * len(k), out, day_bytes)
            index.candidates(view, len(k) * dp3t.EPHIDS_PER_DAY)

    aes_only = per_key(lambda: [aes.encrypt_many(k, [zeros] * len(k), out, day_bytes) for k in stream_keys], n, repeats)
    result = {
        "full": per_key(lambda: dp3t_hits(table, index, TODAY, expander=expander), n, repeats),
        "key_days": per_key(lambda: [_key_days(table, a, b, TODAY) for a, b in parts], n, repeats),
        "hmac_stream_key": per_key(lambda: [hmac_sha256_many(s, dp3t.BROADCAST_KEY) for s in sks], n, repeats),
        "aes_ctr_96_ephids": aes_only,
        "bitmap_and_prefix_filter": round(per_key(look_up, n, repeats) - aes_only, 3),
    }
    expander.close()
    return result


def call_costs(n: int, repeats: int) -> dict[str, float]:
    """The fixed cost of the Python->C calls a key needs, each made ``n`` times from a C-level loop
    (``map``), so no Python bytecode runs per call: the least each can cost from Python."""
    data = [i.to_bytes(16, "little") for i in range(n)]
    made = list(map(hashlib.sha256, data))
    base = hashlib.sha256(bytes(64))
    sha = type(base)
    costs = {
        "sha256_new_16_bytes": per_key(lambda: list(map(hashlib.sha256, data)), n, repeats),
        "sha256_copy": per_key(lambda: list(map(sha.copy, repeat(base, n))), n, repeats),
        "sha256_digest": per_key(lambda: list(map(sha.digest, made)), n, repeats),
    }
    lib = _libcrypto()
    if lib is not None:
        version = lib["OpenSSL_version_num"]  # a C function that does nothing: the bare ctypes call
        costs["ctypes_call_no_args"] = per_key(lambda: list(starmap(version, repeat((), n))), n, repeats)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--heard", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    report = {
        "keys": args.keys,
        "heard_ids": args.heard,
        "cpu_us_per_key": {
            "gaen": gaen_stages(args.keys, args.heard, args.repeats),
            "dp3t": dp3t_stages(args.keys, args.heard, args.repeats),
        },
        "cpu_us_per_call": call_costs(args.keys, args.repeats),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

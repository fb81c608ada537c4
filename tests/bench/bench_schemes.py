"""IDs derived per second for each scheme, as ratios to raw AES floors measured in the same run.

Run: python tests/bench/bench_schemes.py [--keys N]
Floors: 'bulk AES' = AES-128-ECB blocks/s through one cipher call over a large buffer (the cost of the
AES work alone); 'keyed AES' = blocks/s when every block needs a new cipher object (the per-key cost a
scheme pays at least once). Machines here are shared and noisy: read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.schemes import dp3t, ebid, gaen


def best_rate(fn: Callable[[], int], repeats: int = 5) -> float:
    """Median of ``repeats`` runs of items/second."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    args = parser.parse_args()
    n = args.keys
    keys16 = [os.urandom(16) for _ in range(n)]
    keys32 = [os.urandom(32) for _ in range(n)]
    buf = bytes(16 * 144 * n)

    def bulk_aes() -> int:
        enc = Cipher(algorithms.AES(keys16[0]), modes.ECB()).encryptor()
        enc.update(buf)
        return len(buf) // 16

    def keyed_aes() -> int:
        block = bytes(16)
        for k in keys16:
            Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(block)
        return n

    def gaen_ids() -> int:
        for k in keys16:
            gaen.rpis(gaen.rpik(k), 2_650_000)
        return n * gaen.ROLLING_PERIOD

    def dp3t_ids() -> int:
        for k in keys32:
            dp3t.ephids(k)
        return n * dp3t.EPHIDS_PER_DAY

    def ebid_ids() -> int:
        puid = os.urandom(16)
        for k in keys16:
            ebid.make_ebid(k, puid)
        return n

    floors = {"bulk_aes_blocks_per_s": best_rate(bulk_aes), "keyed_aes_blocks_per_s": best_rate(keyed_aes)}
    schemes = {"gaen": best_rate(gaen_ids), "dp3t": best_rate(dp3t_ids), "ebid": best_rate(ebid_ids)}
    report = {
        **{k: round(v) for k, v in floors.items()},
        "schemes": {
            name: {
                "ids_per_s": round(rate),
                "ratio_to_bulk_aes": round(rate / floors["bulk_aes_blocks_per_s"], 4),
                "ratio_to_keyed_aes": round(rate / floors["keyed_aes_blocks_per_s"], 3),
            }
            for name, rate in schemes.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

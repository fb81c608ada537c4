"""Blind signatures per second on one 2048-bit key: the pure-Python RSASP1, the libcrypto one, and an
OpenSSL RSASSA-PSS signature (``cryptography``'s ``sign``) on the same key in the same run, as ratios.

Run: PYTHONPATH=. python tests/bench/bench_blind_sign.py [--signatures N] [--threads T]
The PSS signature is the floor: it is the same private operation plus padding, so the libcrypto blind
signature should sit near 1x of it and the pure path far below. The threaded figure (T threads sharing one
signer, each call with its own EVP_PKEY_CTX) is a ratio to one thread; ctypes releases the GIL around the
private operation, so it can exceed 1 up to the number of free cores. The resident-size growth over all
libcrypto signatures shows whether a context or buffer leaks (it should stay near 0). Machines here are
shared and noisy: read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench_schemes import best_rate
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.protocol import blind_rsa


def rss_kib() -> int:
    """The current resident size (Linux's /proc), not the peak: growth is what a leak shows."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    n = args.signatures
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    modulus = key.public_key().public_numbers().n
    k = blind_rsa.modulus_len(key.public_key())
    inputs = [secrets.randbelow(modulus).to_bytes(k, "big") for _ in range(n)]
    fast, pure = blind_rsa.BlindSigner(key), blind_rsa.BlindSigner(key, native=False)
    if not fast.native:
        raise SystemExit("libcrypto (OpenSSL 3) could not be loaded: only the pure path exists here")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

    def openssl_pss() -> int:
        for m in inputs:
            key.sign(m, pss, hashes.SHA384())
        return n

    def signer_rate(signer: blind_rsa.BlindSigner) -> Callable[[], int]:
        def run() -> int:
            for m in inputs:
                signer.sign(m)
            return n

        return run

    def threaded() -> int:
        with ThreadPoolExecutor(args.threads) as pool:
            for _ in pool.map(fast.sign, inputs * args.threads):
                pass
        return n * args.threads

    floor = best_rate(openssl_pss)
    rss_before = rss_kib()
    libcrypto = best_rate(signer_rate(fast))
    rss_after = rss_kib()
    pure_rate = best_rate(signer_rate(pure), repeats=3)
    threads = best_rate(threaded, repeats=3)
    report = {
        "openssl_pss_ms_per_signature": round(1000 / floor, 3),
        "libcrypto_blind_ms_per_signature": round(1000 / libcrypto, 3),
        "pure_blind_ms_per_signature": round(1000 / pure_rate, 3),
        "libcrypto_over_pure_speedup": round(libcrypto / pure_rate, 2),
        "libcrypto_ratio_to_openssl_pss": round(libcrypto / floor, 3),
        "pure_ratio_to_openssl_pss": round(pure_rate / floor, 3),
        f"libcrypto_{args.threads}_threads_ratio_to_1_thread": round(threads / libcrypto, 2),
        "libcrypto_signatures_measured": 5 * n,
        "rss_growth_kib_over_them": rss_after - rss_before,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""How much the export verifier and the JWS layer cost on top of the work nobody can skip.

Baseline for an export: inflate export.bin, one ECDSA P-256 verify over it, one protobuf parse. The
verifier adds the zip limits, the signature bookkeeping and a PublishedKey per key; the ratio says how
much. Baseline for the JWS: one raw ECDSA sign / verify over the same bytes. Run from the worktree:

    PYTHONPATH=. python tests/bench/bench_export.py   (or with the package installed)
"""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import __version__ as protobuf_version
from google.protobuf.internal import api_implementation

from agent.protocol.export import (
    EXPORT_HEADER,
    SignatureInfo,
    build_export,
    verify_export,
)
from agent.protocol.jws import sign_response, verify_response
from agent.protocol.proto import gaen_export as pb
from agent.schemes.published import PublishedKey

NOW = 1_700_000_000
INFO = SignatureInfo("228", "v1")


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds (the least disturbed by the other jobs on the box)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def keys(n: int) -> list[PublishedKey]:
    enin = NOW // 600
    return [
        PublishedKey(
            key_data=os.urandom(16),
            rolling_start_interval_number=(enin // 144 - 1 - i % 14) * 144,
            transmission_risk_level=i % 8,
            report_type=1,
            days_since_onset=i % 14 - 7,
        )
        for i in range(n)
    ]


def bench_export(n: int, signer: ec.EllipticCurvePrivateKey, repeat: int) -> None:
    key_list = keys(n)
    trusted = {"228": signer.public_key()}

    def build() -> bytes:
        return build_export(
            key_list,
            start=NOW - 7200,
            end=NOW,
            region="CH",
            batch_num=1,
            batch_size=1,
            signature_info=INFO,
            private_key=signer,
        )

    data = build()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        sig_der = pb.TEKSignatureList.FromString(zf.read("export.sig")).signatures[0].signature

    def baseline() -> None:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            export_bin = zf.read("export.bin")
        signer.public_key().verify(sig_der, export_bin, ec.ECDSA(hashes.SHA256()))
        pb.TemporaryExposureKeyExport.FromString(export_bin[len(EXPORT_HEADER) :])

    t_base = best_of(baseline, repeat)
    t_verify = best_of(lambda: verify_export(data, trusted, now=NOW), repeat)
    t_build = best_of(build, repeat)
    print(
        f"export {n:>7} keys ({len(data) / 1024:8.1f} KiB zip): "
        f"verify {t_verify * 1e3:8.2f} ms = {t_verify / t_base:5.2f}x baseline ({t_base * 1e3:.2f} ms), "
        f"{t_verify / n * 1e6:5.2f} us/key; build {t_build * 1e3:8.2f} ms = {t_build / t_base:5.2f}x baseline"
    )


def bench_jws(signer: ec.EllipticCurvePrivateKey, body: bytes, repeat: int) -> None:
    token = sign_response(body, signer, now=NOW, ttl=3600)
    public = signer.public_key()
    der = signer.sign(body, ec.ECDSA(hashes.SHA256()))
    t_sign_base = best_of(lambda: signer.sign(body, ec.ECDSA(hashes.SHA256())), repeat)
    t_verify_base = best_of(lambda: public.verify(der, body, ec.ECDSA(hashes.SHA256())), repeat)
    t_sign = best_of(lambda: sign_response(body, signer, now=NOW, ttl=3600), repeat)
    t_verify = best_of(lambda: verify_response(body, token, public, now=NOW), repeat)
    print(
        f"jws over {len(body) / 1024:7.1f} KiB body: sign {t_sign * 1e6:8.1f} us = "
        f"{t_sign / t_sign_base:5.2f}x raw ECDSA sign; verify {t_verify * 1e6:8.1f} us = "
        f"{t_verify / t_verify_base:5.2f}x raw ECDSA verify"
    )


def main() -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    print(f"python {sys.version.split()[0]}, protobuf {protobuf_version} ({api_implementation.Type()})")
    for n, repeat in ((1_000, 9), (10_000, 5), (100_000, 3)):
        bench_export(n, signer, repeat)
    for size in (1_024, 1_024 * 1_024):
        bench_jws(signer, os.urandom(size), 50 if size < 100_000 else 9)


if __name__ == "__main__":
    main()

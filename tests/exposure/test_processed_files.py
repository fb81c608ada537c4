"""A list file matched before is known again by its export.sig alone: its export.bin (tens of megabytes
for a national list) is neither inflated nor hashed a second time, and a file is only ever known once its
results are stored."""

from __future__ import annotations

import io
import random
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import standard_export

from agent.clock import day_of
from agent.exposure import ExportRun, HeardIds, process_export, processed_before
from agent.protocol.export import (
    EXPORT_BIN,
    EXPORT_SIG,
    ExportError,
    SignatureInfo,
    StreamedExport,
    export_identity,
    verify_export_stream,
    zip_export,
)
from agent.risk import RiskSettings
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow
from agent.store import Store

INFO = SignatureInfo(verification_key_id="228", verification_key_version="v1")
NOW = time.time()
TODAY = day_of(NOW)


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def export_file(signer: ec.EllipticCurvePrivateKey, seed: int, extra: tuple[PublishedKey, ...] = ()) -> bytes:
    rng = random.Random(seed)
    keys = [PublishedKey(rng.randbytes(16), (TODAY - rng.randrange(1, 10)) * 144) for _ in range(200)]
    return standard_export(
        signer, [*keys, *extra], start=int(NOW) - 86400, end=int(NOW) - 3600, region="XX", signature_info=INFO
    )


def entries(data: bytes) -> tuple[bytes, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(EXPORT_BIN), zf.read(EXPORT_SIG)


def match(store: Store, data: bytes, signer: ec.EllipticCurvePrivateKey) -> None:
    streamed = verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, now=NOW)
    process_export(store, streamed, ExportRun(SchemeName.GAEN, "t", NOW, RiskSettings(), 0.0))


def test_a_matched_file_is_known_again_without_its_export_bin_being_read(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    store = Store.open(tmp_path)
    data, other = export_file(signer, 1), export_file(signer, 2)
    assert not processed_before(store, io.BytesIO(data))
    match(store, data, signer)
    assert processed_before(store, io.BytesIO(data))
    assert not processed_before(store, io.BytesIO(other))  # another list is matched as usual
    _, export_sig = entries(data)
    unreadable_bin = zip_export(b"\x00" * 64, export_sig)  # would be refused if it were read: it is not
    assert processed_before(store, io.BytesIO(unreadable_bin))
    store.close()


def test_the_identity_is_the_export_sig_and_the_verifier_reports_the_same(signer: ec.EllipticCurvePrivateKey) -> None:
    data = export_file(signer, 3)
    streamed = verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, now=NOW)
    assert export_identity(io.BytesIO(data)) == streamed.summary.signature_sha256


def test_a_resigned_copy_is_verified_then_known_by_its_export_bin(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    store = Store.open(tmp_path)
    data = export_file(signer, 4)
    match(store, data, signer)
    export_bin, _ = entries(data)
    streamed = verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, now=NOW)
    resigned = standard_export(
        signer,
        list(next(streamed.keys())),
        start=int(NOW) - 86400,
        end=int(NOW) - 3600,
        region="XX",
        signature_info=INFO,
    )  # the same keys signed again: ECDSA's fresh nonce makes another export.sig
    assert entries(resigned)[0] == export_bin and not processed_before(store, io.BytesIO(resigned))
    again = verify_export_stream(io.BytesIO(resigned), {"228": signer.public_key()}, now=NOW)
    outcome = process_export(store, again, ExportRun(SchemeName.GAEN, "t", NOW, RiskSettings(), 0.0))
    assert outcome.already_processed  # by export.bin's digest, and from now on by this export.sig too
    assert processed_before(store, io.BytesIO(resigned))
    store.close()


def test_a_refused_file_is_not_known_afterwards(signer: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    data = export_file(signer, 5, (PublishedKey(b"\xff" * 16, (TODAY + 3) * 144),))  # starts in the future
    with pytest.raises(ExportError, match="starts in the future"):
        match(store, data, signer)
    assert not processed_before(store, io.BytesIO(data))
    store.close()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", zip_export(b"EK Export v1    ", b"")[:40]])
def test_an_unreadable_file_is_not_known_and_left_to_the_verifier(content: bytes, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert not processed_before(store, io.BytesIO(content))
    with pytest.raises(ExportError):
        export_identity(io.BytesIO(content))
    store.close()


def verify(data: bytes, signer: ec.EllipticCurvePrivateKey) -> StreamedExport:
    return verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, now=NOW)


def windows_of(tek: bytes, interval: int) -> list[SightingWindow]:
    rpi = gaen.rpi(gaen.rpik(tek), interval)
    t = interval * 600
    return [
        SightingWindow(
            SchemeName.GAEN, rpi, t + 60 * m, 4, -60, -56, -232, None, b"", t + 60 * m + 1.0, t + 60 * m + 50.0
        )
        for m in range(10)
    ]


def test_the_heard_ids_are_read_once_for_every_list_of_a_pass(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    store = Store.open(tmp_path)
    tek, start = random.Random(6).randbytes(16), (TODAY - 2) * 144
    planted = PublishedKey(tek, start)
    lists = [export_file(signer, 6), export_file(signer, 7, (planted,)), export_file(signer, 8, (planted,))]
    heard = HeardIds(store, SchemeName.GAEN, NOW, 14)

    def run(data: bytes, ids: HeardIds) -> int:
        run = ExportRun(SchemeName.GAEN, "t", NOW, RiskSettings(), 0.0)
        return process_export(store, verify(data, signer), run, heard=ids).matched_keys

    assert run(lists[0], heard) == 0
    store.add_windows(windows_of(tek, start + 30))  # heard after this pass read its IDs: for the next pass
    assert run(lists[1], heard) == 0
    assert run(lists[2], HeardIds(store, SchemeName.GAEN, NOW, 14)) == 1
    store.close()

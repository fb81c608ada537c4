"""Helpers for the list-format tests: constants and builders for valid and hostile export files.

The builders assemble zips and signatures from the protobuf classes and ``cryptography`` directly, not
through ``build_export``, so tests can make files our builder would refuse to write (wrong key lengths,
bad batches, ...) but that are validly signed, and so reach the verifier's content checks. (A module of
its own with a unique name, because test directories here have no ``__init__.py``.)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.protocol.export import EXPORT_HEADER, SignatureInfo, build_export, zip_export
from agent.protocol.proto import gaen_export as pb
from agent.schemes.published import PublishedKey

TEST_INFO = SignatureInfo(verification_key_id="228", verification_key_version="v1")
TEST_START = 1_700_000_000  # an export window that closed at TEST_END
TEST_END = TEST_START + 7200
TEST_NOW = TEST_END + 600
TEST_ENIN = TEST_START // 600


@dataclass(frozen=True)
class EnsExample:
    """The real signed export from Google's Exposure Notifications server (tests/data)."""

    export_bin: bytes
    export_sig: bytes
    public_key: ec.EllipticCurvePublicKey
    raw: dict[str, Any]


def sample_keys(n: int = 3, length: int = 16) -> list[PublishedKey]:
    return [
        PublishedKey(
            key_data=bytes([i + 1]) * length,
            rolling_start_interval_number=TEST_ENIN - 144 * (i + 1),
            rolling_period=144,
            transmission_risk_level=i % 9,
            report_type=1,
            days_since_onset=i - 1,
        )
        for i in range(n)
    ]


def standard_export(
    signer: ec.EllipticCurvePrivateKey, keys: Sequence[PublishedKey] | None = None, **overrides: Any
) -> bytes:
    """``build_export`` with the tests' usual arguments (CH, batch 1 of 1, TEST_INFO, the test window)."""
    args: dict[str, Any] = {
        "start": TEST_START,
        "end": TEST_END,
        "region": "CH",
        "batch_num": 1,
        "batch_size": 1,
        "signature_info": TEST_INFO,
        "private_key": signer,
    }
    return build_export(sample_keys() if keys is None else keys, **{**args, **overrides})


def pb_key(
    key_data: bytes = b"\x11" * 16,
    rsin: int | None = TEST_ENIN - 144,
    period: int | None = 144,
    **fields: Any,
) -> Any:
    msg = pb.TemporaryExposureKey(key_data=key_data, **fields)
    if rsin is not None:
        msg.rolling_start_interval_number = rsin
    if period is not None:
        msg.rolling_period = period
    return msg


def export_message(
    keys: Sequence[Any] | None = None,
    *,
    start: int = TEST_START,
    end: int = TEST_END,
    batch: tuple[int, int] = (1, 1),
    infos: Sequence[SignatureInfo] = (TEST_INFO,),
) -> Any:
    msg = pb.TemporaryExposureKeyExport(
        start_timestamp=start, end_timestamp=end, region="CH", batch_num=batch[0], batch_size=batch[1]
    )
    for info in infos:
        msg.signature_infos.add(
            verification_key_id=info.verification_key_id,
            verification_key_version=info.verification_key_version,
            signature_algorithm=info.signature_algorithm,
        )
    for key in [pb_key()] if keys is None else keys:
        msg.keys.append(key)
    return msg


SigSpec = tuple[SignatureInfo, ec.EllipticCurvePrivateKey]


def signature_list(export_bin: bytes, signers: Sequence[SigSpec], *, batch: tuple[int, int] = (1, 1)) -> bytes:
    sigs = pb.TEKSignatureList()
    for info, key in signers:
        sigs.signatures.add(
            signature_info=pb.SignatureInfo(
                verification_key_id=info.verification_key_id,
                verification_key_version=info.verification_key_version,
                signature_algorithm=info.signature_algorithm,
            ),
            batch_num=batch[0],
            batch_size=batch[1],
            signature=key.sign(export_bin, ec.ECDSA(hashes.SHA256())),
        )
    return sigs.SerializeToString()


def zip_signed(
    content: Any,
    signer: ec.EllipticCurvePrivateKey,
    *,
    signers: Sequence[SigSpec] | None = None,
    sig_batch: tuple[int, int] = (1, 1),
) -> bytes:
    """Zip an export (a protobuf message, or raw export.bin bytes) signed by ``signer`` as TEST_INFO."""
    export_bin = content if isinstance(content, bytes) else EXPORT_HEADER + content.SerializeToString()
    sig = signature_list(export_bin, [(TEST_INFO, signer)] if signers is None else signers, batch=sig_batch)
    return zip_export(export_bin, sig)


def raw_zip(entries: Sequence[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return buf.getvalue()


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key_entries(keys: Sequence[PublishedKey]) -> bytes:
    """The keys as export.bin ``keys`` entries, encoded by hand (protobuf objects take seconds for the
    hundreds of thousands of keys of a national file); the same bytes ``build_export`` writes."""
    out = []
    for k in keys:
        body = b"\x0a" + bytes([len(k.key_data)]) + k.key_data
        body += b"\x10" + varint(k.transmission_risk_level) + b"\x18" + varint(k.rolling_start_interval_number)
        body += b"\x20" + varint(k.rolling_period)
        if k.report_type:
            body += b"\x28" + varint(k.report_type)
        if k.days_since_onset is not None:
            body += b"\x30" + varint((k.days_since_onset << 1) ^ (k.days_since_onset >> 31))  # zigzag
        out.append(b"\x3a" + bytes([len(body)]) + body)
    return b"".join(out)


def signed_from_entries(entries: bytes, signer: ec.EllipticCurvePrivateKey) -> bytes:
    """A signed export zip whose export.bin is the test header fields followed by ``entries``."""
    export_bin = EXPORT_HEADER + export_message([]).SerializeToString() + entries
    return zip_export(export_bin, signature_list(export_bin, [(TEST_INFO, signer)]))

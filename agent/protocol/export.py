"""GAEN key export files: the signed zip in which the backend publishes diagnosis keys and agents fetch them.

The same container carries GAEN TEKs (16 bytes) and, under a separate endpoint, DP-3T day keys (32 bytes),
so one builder and one verifier serve the server, the sync client and ``proxitrace match``. The verifier
sees bytes from the network: it bounds every size before reading, authenticates export.bin before parsing
it, and turns every way a file can be wrong into one ``ExportError`` with a one-line reason, so a caller
needs exactly one ``except`` and a refused file yields nothing. Pure: bytes in, bytes out.

Building lives here; the shared vocabulary is ``export_format``, the in-memory verifier ``export_verify``
and the streamed verifier ``export_stream``. This module is the face of all four, so
``from agent.protocol.export import …`` names any of them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import Message

from agent.protocol.export_format import (
    DEFAULT_LIMITS,
    ECDSA_P256_SHA256_OID,
    EXPORT_BIN,
    EXPORT_HEADER,
    EXPORT_SIG,
    ExportError,
    ExportLimits,
    PublicKeys,
    SignatureInfo,
    VerifiedExport,
    check_p256,
)
from agent.protocol.export_stream import (
    STREAM_READ_BYTES,
    ExportSummary,
    KeyChunk,
    StreamedExport,
    export_identity,
    parse_key_chunk,
    parse_key_table,
    verify_export_stream,
)
from agent.protocol.export_verify import verify_export
from agent.protocol.proto import gaen_export as pb
from agent.schemes.published import (
    PublishedKey,
    ReportType,
)

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry timestamps: same input, same archive bytes
_MAX_UINT64 = 2**64 - 1
_MAX_INT32 = 2**31 - 1

__all__ = [
    "DEFAULT_LIMITS",
    "ECDSA_P256_SHA256_OID",
    "EXPORT_BIN",
    "EXPORT_HEADER",
    "EXPORT_SIG",
    "STREAM_READ_BYTES",
    "ExportError",
    "ExportLimits",
    "ExportSummary",
    "KeyChunk",
    "PublicKeys",
    "SignatureInfo",
    "StreamedExport",
    "VerifiedExport",
    "build_export",
    "encode_export_bin",
    "export_identity",
    "parse_key_chunk",
    "parse_key_table",
    "sign_export_bin",
    "verify_export",
    "verify_export_stream",
    "zip_export",
]


# --------------------------------------------------------------------------------------------- building


def encode_export_bin(
    keys: Iterable[PublishedKey],
    *,
    start: int,
    end: int,
    region: str,
    batch_num: int,
    batch_size: int,
    signature_infos: Sequence[SignatureInfo],
    revised_keys: Iterable[PublishedKey] = (),
) -> bytes:
    """The export.bin bytes (header + protobuf) for these keys.

    Keys are written sorted by key bytes, not in upload order, so keys of one upload don't sit together
    in the file and can't be linked to each other by position. Raises ValueError for inputs that would
    make a file our own verifier refuses.
    """
    key_list = sorted(keys, key=lambda k: k.key_data)
    revised_list = sorted(revised_keys, key=lambda k: k.key_data)
    _check_build_args(key_list + revised_list, start, end, batch_num, batch_size, signature_infos)
    msg = pb.TemporaryExposureKeyExport(
        start_timestamp=start, end_timestamp=end, region=region, batch_num=batch_num, batch_size=batch_size
    )
    for info in signature_infos:
        msg.signature_infos.append(_info_to_pb(info))
    for key in key_list:
        msg.keys.append(_key_to_pb(key))
    for key in revised_list:
        msg.revised_keys.append(_key_to_pb(key))
    return EXPORT_HEADER + msg.SerializeToString()


def sign_export_bin(export_bin: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """DER ECDSA P-256 / SHA-256 signature over the whole export.bin, header included."""
    check_p256(private_key.curve, "private key")
    return private_key.sign(export_bin, ec.ECDSA(hashes.SHA256()))


def build_export(
    keys: Iterable[PublishedKey],
    *,
    start: int,
    end: int,
    region: str,
    batch_num: int,
    batch_size: int,
    signature_info: SignatureInfo,
    private_key: ec.EllipticCurvePrivateKey,
    revised_keys: Iterable[PublishedKey] = (),
    extra_signers: Sequence[tuple[SignatureInfo, ec.EllipticCurvePrivateKey]] = (),
) -> bytes:
    """A complete export zip (export.bin + export.sig), signed by ``private_key`` and any extra signers.

    Extra signers let one file serve clients that trust different keys, or carry old and new key during a
    rotation. The zip is deterministic apart from the ECDSA signatures, which are randomised.
    """
    signers = [(signature_info, private_key), *extra_signers]
    export_bin = encode_export_bin(
        keys,
        start=start,
        end=end,
        region=region,
        batch_num=batch_num,
        batch_size=batch_size,
        signature_infos=[info for info, _ in signers],
        revised_keys=revised_keys,
    )
    sig_list = pb.TEKSignatureList()
    for info, key in signers:
        sig_list.signatures.append(
            pb.TEKSignature(
                signature_info=_info_to_pb(info),
                batch_num=batch_num,
                batch_size=batch_size,
                signature=sign_export_bin(export_bin, key),
            )
        )
    return zip_export(export_bin, sig_list.SerializeToString())


def zip_export(export_bin: bytes, export_sig: bytes) -> bytes:
    """Pack export.bin and export.sig into the zip clients expect (deflated, fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in ((EXPORT_BIN, export_bin), (EXPORT_SIG, export_sig)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, content)
    return buf.getvalue()


def _check_build_args(
    keys: Sequence[PublishedKey],
    start: int,
    end: int,
    batch_num: int,
    batch_size: int,
    signature_infos: Sequence[SignatureInfo],
) -> None:
    if not 0 <= start <= end <= _MAX_UINT64:
        raise ValueError(f"need 0 <= start <= end, got start={start} end={end}")
    if not 1 <= batch_num <= batch_size <= _MAX_INT32:
        raise ValueError(f"need 1 <= batch_num <= batch_size, got {batch_num} of {batch_size}")
    if not signature_infos:
        raise ValueError("an export needs at least one signature info")
    lengths = {len(k.key_data) for k in keys}
    if len(lengths) > 1:
        raise ValueError(f"one export holds one kind of key, got key lengths {sorted(lengths)}")
    for key in keys:
        if not isinstance(key, PublishedKey):
            raise ValueError(f"keys must be PublishedKey, got {type(key).__name__}")


def _info_to_pb(info: SignatureInfo) -> Message:
    return pb.SignatureInfo(
        verification_key_id=info.verification_key_id,
        verification_key_version=info.verification_key_version,
        signature_algorithm=info.signature_algorithm,
    )


def _key_to_pb(key: PublishedKey) -> Message:
    msg = pb.TemporaryExposureKey(
        key_data=key.key_data,
        transmission_risk_level=key.transmission_risk_level,
        rolling_start_interval_number=key.rolling_start_interval_number,
        rolling_period=key.rolling_period,
    )
    if key.report_type != ReportType.UNKNOWN:
        msg.report_type = int(key.report_type)
    if key.days_since_onset is not None:
        msg.days_since_onset_of_symptoms = key.days_since_onset
    return msg

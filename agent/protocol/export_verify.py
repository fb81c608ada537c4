"""Verifying a GAEN key export file from the network (``verify_export``): bytes in, verified keys or one
``ExportError`` out. It bounds every size before reading, authenticates export.bin before parsing it, and
turns every way a file can be wrong into a one-line reason, so a caller needs exactly one ``except``.

It also holds the checks the streamed verifier (``export_stream``) shares: the zip-level refusals, the
signature and binding checks, the content and per-key checks, protobuf field framing and the one-line
reason helpers. Kept here once, so both paths refuse the same files for the same reasons.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from google.protobuf.message import DecodeError, Message

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
from agent.protocol.proto import gaen_export as pb
from agent.schemes.published import (
    DP3T_KEY_LEN,
    ENIN_SECONDS,
    GAEN_KEY_LEN,
    MAX_INTERVAL_NUMBER,
    MAX_ROLLING_PERIOD,
    PublishedKey,
)

# Everything the zip and protobuf layers raise on malformed input; anything else is a bug, not bad data.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    struct.error,
    zlib.error,
    KeyError,
    IndexError,
    OverflowError,
)
_PROTO_ERRORS = (DecodeError, ValueError, RuntimeError, OverflowError)


# ------------------------------------------------------------------------------------------- verifying


def verify_export(
    data: bytes,
    public_keys: PublicKeys,
    *,
    limits: ExportLimits = DEFAULT_LIMITS,
    now: float | None = None,
    key_length: int = GAEN_KEY_LEN,
) -> VerifiedExport:
    """Check an export zip and return its content, or raise ``ExportError`` (and nothing else) saying why.

    A file is accepted when at least one of its signatures is by a trusted key, every signature by a
    trusted key is valid, and the content makes sense: all keys ``key_length`` bytes (16 for GAEN, 32
    for DP-3T lists), rolling periods within a day, batch numbers and time window consistent. With ``now``
    (unix seconds) a file or key from the future beyond ``limits.clock_skew_seconds`` is refused too.
    """
    _check_trusted_keys(public_keys)
    if key_length not in (GAEN_KEY_LEN, DP3T_KEY_LEN):
        raise ValueError(f"key_length must be {GAEN_KEY_LEN} or {DP3T_KEY_LEN}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ExportError(f"export must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_archive_bytes:
        raise ExportError(f"oversized archive: {len(data)} bytes, limit {limits.max_archive_bytes}")

    export_bin, export_sig = _read_entries(data, limits)
    if len(export_bin) < len(EXPORT_HEADER):
        raise ExportError(f"truncated export.bin: {len(export_bin)} bytes, shorter than its header")
    if export_bin[: len(EXPORT_HEADER)] != EXPORT_HEADER:
        raise ExportError("wrong export.bin header (want 'EK Export v1' + 4 spaces)")

    trusted = _check_signatures(hashlib.sha256(export_bin).digest(), export_sig, public_keys, limits)
    _check_key_count(export_bin, limits)
    content = _parse_export_bin(export_bin)
    infos = tuple(_info_from_pb(i, EXPORT_BIN) for i in content.signature_infos)
    _check_binding(content, infos, trusted)
    return _to_verified(content, infos, trusted[0][0], export_bin, limits, now, key_length)


def _check_trusted_keys(public_keys: PublicKeys) -> None:
    for name, key in public_keys.items():
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError(f"trusted key {name!r} is {type(key).__name__}, want an EC P-256 public key")
        check_p256(key.curve, f"trusted key {name!r}")


def _read_entries(data: bytes, limits: ExportLimits) -> tuple[bytes, bytes]:
    with _open_zip(io.BytesIO(data)) as zf:
        wanted = _find_entries(zf, limits)
        export_bin = _read_entry(zf, wanted[EXPORT_BIN], limits.max_export_bin_bytes, limits)
        export_sig = _read_entry(zf, wanted[EXPORT_SIG], limits.max_export_sig_bytes, limits)
    return export_bin, export_sig


def _open_zip(source: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except _ZIP_ERRORS:
        source.seek(0)
        if source.read(4) == b"PK\x03\x04":
            raise ExportError("truncated or corrupt zip archive (no readable central directory)") from None
        raise ExportError("not a zip archive") from None


def _find_entries(zf: zipfile.ZipFile, limits: ExportLimits) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()  # parsed on open, bounded by max_archive_bytes
    if len(infos) > limits.max_entries:
        raise ExportError(f"too many zip entries: {len(infos)}, limit {limits.max_entries}")
    wanted: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in (EXPORT_BIN, EXPORT_SIG):
            if info.filename in wanted:
                raise ExportError(f"duplicate {info.filename} in zip archive")
            wanted[info.filename] = info
    for name in (EXPORT_BIN, EXPORT_SIG):
        if name not in wanted:
            raise ExportError(f"missing {name} in zip archive")
    return wanted


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, limits: ExportLimits) -> bytes:
    """One entry, refused on its declared sizes first and then read with a hard cap whatever it declared."""
    name = info.filename
    _check_declared(info, cap, limits)
    try:
        with zf.open(info) as f:
            content = f.read(cap + 1)
    except EOFError:
        raise ExportError(f"truncated {name} (compressed data ends early)") from None
    except _ZIP_ERRORS as exc:
        raise ExportError(f"corrupt {name}: {_one_line(str(exc))}") from None
    if len(content) > cap:
        raise ExportError(f"oversized {name}: more than {cap} bytes")
    if len(content) != info.file_size:
        raise ExportError(f"truncated {name}: {len(content)} of {info.file_size} bytes")
    return content


def _check_declared(info: zipfile.ZipInfo, cap: int, limits: ExportLimits) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise ExportError(f"encrypted {name}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ExportError(f"unsupported compression method {info.compress_type} for {name}")
    if info.file_size > cap:
        raise ExportError(f"oversized {name}: declares {info.file_size} bytes, limit {cap}")
    ratio_limit = limits.max_compression_ratio * max(info.compress_size, 1)
    if info.file_size > limits.ratio_exempt_bytes and info.file_size > ratio_limit:
        raise ExportError(f"compression ratio of {name} too high: {info.file_size} from {info.compress_size} bytes")


def _check_signatures(
    export_bin_sha256: bytes, export_sig: bytes, public_keys: PublicKeys, limits: ExportLimits
) -> list[tuple[SignatureInfo, Message]]:
    """The signatures by trusted keys, all verified; refuses if there is none or any of them is bad.

    Verified over export.bin's SHA-256 (ECDSA signs the hash), so a streamed export.bin needs no copy."""
    try:
        sig_list = pb.TEKSignatureList.FromString(export_sig)
        signatures = list(sig_list.signatures)
    except _PROTO_ERRORS:
        raise ExportError("export.sig: protobuf decode error") from None
    if not signatures:
        raise ExportError("no signature in export.sig")
    if len(signatures) > limits.max_signatures:
        raise ExportError(f"too many signatures: {len(signatures)}, limit {limits.max_signatures}")

    trusted: list[tuple[SignatureInfo, Message, ec.EllipticCurvePublicKey]] = []
    seen: list[str] = []
    for sig in signatures:
        info = _info_from_pb(sig.signature_info, EXPORT_SIG)
        key = _lookup(public_keys, info)
        if key is None:
            seen.append(_show(info.verification_key_id))
            continue
        trusted.append((info, sig, key))
    if not trusted:
        raise ExportError(f"signature by an unknown key (key ids in file: {', '.join(seen)})")

    for info, sig, key in trusted:
        if info.signature_algorithm not in ("", ECDSA_P256_SHA256_OID):
            raise ExportError(f"unsupported signature algorithm {_show(info.signature_algorithm)}")
        try:
            key.verify(sig.signature, export_bin_sha256, ec.ECDSA(Prehashed(hashes.SHA256())))
        except (InvalidSignature, ValueError):
            raise ExportError(
                f"bad signature by key id {_show(info.verification_key_id)} "
                f"version {_show(info.verification_key_version)}"
            ) from None
    return [(info, sig) for info, sig, _ in trusted]


def _lookup(public_keys: PublicKeys, info: SignatureInfo) -> ec.EllipticCurvePublicKey | None:
    pinned = public_keys.get((info.verification_key_id, info.verification_key_version))
    return pinned if pinned is not None else public_keys.get(info.verification_key_id)


_KEY_FIELDS = (7, 8)  # TemporaryExposureKeyExport.keys, .revised_keys


def _check_key_count(export_bin: bytes, limits: ExportLimits) -> None:
    """Count the key records by walking the protobuf's top-level fields, before parsing: a parsed key
    costs hundreds of bytes of Python objects, so a 30 MB file of a million keys would take a gigabyte
    to reach the limit the parse checks. Malformed framing is left to the parser to name."""
    data = memoryview(export_bin)[len(EXPORT_HEADER) :]
    pos, end, count = 0, len(data), 0
    while pos < end:
        parsed = _field_header(data, pos, end)
        if not isinstance(parsed, tuple):
            break  # cut short or not protobuf: the parser names it
        field, wire_type, length, offset = parsed
        pos = offset + length
        if wire_type == _LEN and field in _KEY_FIELDS:
            count += 1
    if count > limits.max_keys:
        raise ExportError(f"too many keys: {count}, limit {limits.max_keys}")


# Protobuf field framing, read without parsing (the key count above and the streamed reader use these).
_DECODE_ERROR = "export.bin: protobuf decode error"
Buffer = bytes | bytearray | memoryview
_LEN = 2


def _field_header(buf: Buffer, pos: int, end: int) -> tuple[int, int, int, int] | str | None:
    """(field number, wire type, payload length, payload offset) of the field at ``pos``; None when the
    buffer ends inside it; a reason when it cannot be a protobuf field."""
    parsed = _varint(buf, pos, end)
    if parsed is None or isinstance(parsed, str):
        return parsed
    tag, pos = parsed
    field, wire_type = tag >> 3, tag & 7
    if field == 0:
        return _DECODE_ERROR
    if wire_type == 0:
        value = _varint(buf, pos, end)
        if value is None or isinstance(value, str):
            return value
        return field, wire_type, value[1] - pos, pos
    if wire_type == 1:
        return field, wire_type, 8, pos
    if wire_type == 5:
        return field, wire_type, 4, pos
    if wire_type == _LEN:
        length = _varint(buf, pos, end)
        if length is None or isinstance(length, str):
            return length
        return field, wire_type, length[0], length[1]
    return _DECODE_ERROR  # groups (3, 4) are not part of this format; 6 and 7 are no wire type


def _varint(buf: Buffer, pos: int, end: int) -> tuple[int, int] | str | None:
    """A varint at ``pos`` and the position after it; None when ``end`` comes first (more may follow in
    a stream), a reason when it runs past 10 bytes."""
    value = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    return None if end - pos < 10 else _DECODE_ERROR


def _parse_export_bin(export_bin: bytes) -> Message:
    try:
        content = pb.TemporaryExposureKeyExport.FromString(export_bin[len(EXPORT_HEADER) :])
    except _PROTO_ERRORS:
        raise ExportError("export.bin: protobuf decode error") from None
    return content


def _check_binding(
    content: Message, infos: tuple[SignatureInfo, ...], trusted: list[tuple[SignatureInfo, Message]]
) -> None:
    """Signed batch numbers and key names must agree with the (signed) export.bin that carries them."""
    declared = {(i.verification_key_id, i.verification_key_version) for i in infos}
    for info, sig in trusted:
        if (sig.batch_num, sig.batch_size) != (content.batch_num, content.batch_size):
            raise ExportError(
                f"signature batch {sig.batch_num} of {sig.batch_size} does not match export "
                f"batch {content.batch_num} of {content.batch_size}"
            )
        if (info.verification_key_id, info.verification_key_version) not in declared:
            raise ExportError(f"signature key id {_show(info.verification_key_id)} not declared in export.bin")


def _to_verified(
    content: Message,
    infos: tuple[SignatureInfo, ...],
    verified_by: SignatureInfo,
    export_bin: bytes,
    limits: ExportLimits,
    now: float | None,
    key_length: int,
) -> VerifiedExport:
    latest_start = _check_content(content, len(content.keys) + len(content.revised_keys), limits, now)
    return VerifiedExport(
        start_timestamp=content.start_timestamp,
        end_timestamp=content.end_timestamp,
        region=_text(content.region, EXPORT_BIN),
        batch_num=content.batch_num,
        batch_size=content.batch_size,
        signature_infos=infos,
        keys=_keys_from_pb(content.keys, "key", key_length, latest_start),
        revised_keys=_keys_from_pb(content.revised_keys, "revised key", key_length, latest_start),
        verified_by=verified_by,
        export_sha256=hashlib.sha256(export_bin).digest(),
    )


def _check_content(content: Message, n_keys: int, limits: ExportLimits, now: float | None) -> int | None:
    """The checks on export.bin's own fields; returns the latest rolling start a key may have (or None)."""
    start, end = content.start_timestamp, content.end_timestamp
    if start > end:
        raise ExportError(f"nonsense time window: start {start} after end {end}")
    if now is not None and start > now + limits.clock_skew_seconds:
        raise ExportError(f"export from the future: starts at {start}, now is {int(now)}")
    if not 1 <= content.batch_num <= content.batch_size:
        raise ExportError(f"nonsense batch: {content.batch_num} of {content.batch_size}")
    if n_keys > limits.max_keys:
        raise ExportError(f"too many keys: {n_keys}, limit {limits.max_keys}")
    return None if now is None else int((now + limits.clock_skew_seconds) // ENIN_SECONDS)


def _keys_from_pb(
    messages: Iterable[Message], what: str, key_length: int, latest_start: int | None, first: int = 0
) -> tuple[PublishedKey, ...]:
    out = []
    for n, msg in enumerate(messages, first):
        if len(msg.key_data) != key_length:
            raise ExportError(f"{what} {n}: key_data of wrong length {len(msg.key_data)}, want {key_length}")
        if not msg.HasField("rolling_start_interval_number"):
            raise ExportError(f"{what} {n}: no rolling_start_interval_number")
        start, period = msg.rolling_start_interval_number, msg.rolling_period
        if not 0 <= start <= MAX_INTERVAL_NUMBER - MAX_ROLLING_PERIOD:
            raise ExportError(f"{what} {n}: nonsense rolling_start_interval_number {start}")
        if not 1 <= period <= MAX_ROLLING_PERIOD:
            raise ExportError(f"{what} {n}: nonsense rolling period {period} (want 1..{MAX_ROLLING_PERIOD})")
        if latest_start is not None and start > latest_start:
            raise ExportError(f"{what} {n}: starts in the future (interval {start})")
        try:
            key = PublishedKey(
                key_data=bytes(msg.key_data),
                rolling_start_interval_number=start,
                rolling_period=period,
                transmission_risk_level=msg.transmission_risk_level,
                report_type=msg.report_type,
                days_since_onset=msg.days_since_onset_of_symptoms
                if msg.HasField("days_since_onset_of_symptoms")
                else None,
            )
        except ValueError as exc:
            raise ExportError(f"{what} {n}: {exc}") from None
        out.append(key)
    return tuple(out)


def _info_from_pb(msg: Message, where: str) -> SignatureInfo:
    return SignatureInfo(
        verification_key_id=_text(msg.verification_key_id, where),
        verification_key_version=_text(msg.verification_key_version, where),
        signature_algorithm=_text(msg.signature_algorithm, where),
    )


def _text(value: object, where: str) -> str:
    """A proto2 string field; the runtime hands invalid UTF-8 back as bytes, which we refuse."""
    if not isinstance(value, str):
        raise ExportError(f"{where}: protobuf decode error (string field is not UTF-8)")
    return value


def _show(text: str) -> str:
    """A file-supplied string made safe for a one-line reason: quoted, escaped, and cut short."""
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:120]

"""Verifying a GAEN key export file from the network (``verify_export``): bytes in, verified keys or one
``ExportError`` out. It bounds every size before reading, authenticates export.bin before parsing it, and
turns every way a file can be wrong into a one-line reason, so a caller needs exactly one ``except``.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
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
    MAX_DAYS_SINCE_ONSET,
    MAX_INTERVAL_NUMBER,
    MAX_ROLLING_PERIOD,
    MAX_TRANSMISSION_RISK_LEVEL,
    KeyTable,
    PublishedKey,
    ReportType,
)

_MIB = 1024 * 1024
_MAX_INT32 = 2**31 - 1
_REPORT_TYPE_VALUES = np.array([int(r) for r in ReportType])

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
        tag, pos = _count_varint(data, pos)
        if tag is None:
            break
        wire_type = tag & 7
        if wire_type == 0:
            _, pos = _count_varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _count_varint(data, pos)
            if length is None:
                break
            pos += length
            if tag >> 3 in _KEY_FIELDS:
                count += 1
        else:
            break
    if count > limits.max_keys:
        raise ExportError(f"too many keys: {count}, limit {limits.max_keys}")


def _count_varint(data: memoryview, pos: int) -> tuple[int | None, int]:
    """A protobuf varint at ``pos`` and the position after it; None when it runs off the end or past 10 bytes."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    return None, len(data)


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


# ------------------------------------------------------------------------------- verifying, streamed

STREAM_READ_BYTES = _MIB
_DECODE_ERROR = "export.bin: protobuf decode error"
_KEYS_FIELD, _REVISED_KEYS_FIELD = 7, 8
_LEN = 2


@dataclass(frozen=True)
class ExportSummary:
    """What a streamed export says about itself, checked and signed; the keys are read separately."""

    start_timestamp: int
    end_timestamp: int
    region: str
    batch_num: int
    batch_size: int
    signature_infos: tuple[SignatureInfo, ...]
    verified_by: SignatureInfo
    export_sha256: bytes
    key_count: int
    revised_key_count: int
    key_length: int
    latest_start: int | None


@dataclass(frozen=True)
class KeyChunk:
    """Consecutive key entries of a verified export.bin, still encoded, so a matching worker parses them
    itself (the parent ships bytes, not objects). ``first`` numbers the keys in refusal reasons."""

    revised: bool
    first: int
    count: int
    data: bytes


def parse_key_chunk(chunk: KeyChunk, summary: ExportSummary) -> tuple[PublishedKey, ...]:
    """The keys of one chunk, each checked as ``verify_export`` checks it (same refusals)."""
    try:
        msg = pb.TemporaryExposureKeyExport.FromString(chunk.data)
    except _PROTO_ERRORS:
        raise ExportError(_DECODE_ERROR) from None
    what = "revised key" if chunk.revised else "key"
    messages = msg.revised_keys if chunk.revised else msg.keys
    return _keys_from_pb(messages, what, summary.key_length, summary.latest_start, chunk.first)


def parse_key_table(chunk: KeyChunk, summary: ExportSummary) -> KeyTable:
    """The chunk's keys as a ``KeyTable``, checked exactly as ``parse_key_chunk`` checks them.

    A chunk whose entries all share one layout (one server writes every key of a file the same way) is
    decoded column-wise with numpy, about fifty times faster than building a ``PublishedKey`` per key;
    any other chunk, and any chunk where a key fails a check, goes through ``parse_key_chunk``, so the
    refusal and its reason are the same either way.
    """
    table = _uniform_table(chunk, summary)
    if table is None:
        table = KeyTable.of(parse_key_chunk(chunk, summary), summary.key_length)
    return table


class StreamedExport:
    """A verified export on a seekable file, whose keys are read chunk by chunk on demand.

    Memory stays at a chunk (plus the zip reader's buffers) whatever the list's size: a national list
    of hundreds of thousands of keys is never in memory as a whole, neither as export.bin nor as objects.
    Each pass re-reads export.bin and compares its digest with the verified one at the end, so a file
    changed after verification raises ``ExportError`` instead of passing unverified keys as verified.
    """

    def __init__(self, source: BinaryIO, summary: ExportSummary, limits: ExportLimits) -> None:
        self._source = source
        self.summary = summary
        self._limits = limits

    def chunks(self, keys_per_chunk: int = 2048) -> Iterator[KeyChunk]:
        """Every key and revised key entry, in file order, ``keys_per_chunk`` at most per chunk."""
        scanner = _Scanner(self._limits, keys_per_chunk)
        for data in _stream_export_bin(self._source, self._limits):
            scanner.feed(data)
            yield from scanner.take_chunks()
            if scanner.error is not None:
                raise ExportError(scanner.error)
        scanner.finish()
        yield from scanner.take_chunks()
        if scanner.error is not None:
            raise ExportError(scanner.error)
        if scanner.digest() != self.summary.export_sha256:
            raise ExportError("export.bin changed while it was read")

    def tables(self, keys_per_chunk: int = 2048) -> Iterator[KeyTable]:
        """The (not revised) keys chunk by chunk as ``KeyTable``s; revised keys are checked too."""
        for chunk in self.chunks(keys_per_chunk):
            table = parse_key_table(chunk, self.summary)
            if not chunk.revised:
                yield table

    def keys(self, keys_per_chunk: int = 2048) -> Iterator[tuple[PublishedKey, ...]]:
        """The (not revised) keys chunk by chunk, parsed and checked; revised keys are checked too."""
        for chunk in self.chunks(keys_per_chunk):
            keys = parse_key_chunk(chunk, self.summary)
            if not chunk.revised:
                yield keys


def verify_export_stream(
    source: BinaryIO,
    public_keys: PublicKeys,
    *,
    limits: ExportLimits = DEFAULT_LIMITS,
    now: float | None = None,
    key_length: int = GAEN_KEY_LEN,
) -> StreamedExport:
    """``verify_export`` for a seekable binary file: one streamed pass hashes export.bin (and frames its
    fields, so the key count is known), the signatures are checked over that hash, then the non-key fields
    are checked as ``verify_export`` checks them. The keys are read afterwards through the returned
    ``StreamedExport``; each key is refused there for the same reasons ``verify_export`` refuses it.
    """
    _check_trusted_keys(public_keys)
    if key_length not in (GAEN_KEY_LEN, DP3T_KEY_LEN):
        raise ValueError(f"key_length must be {GAEN_KEY_LEN} or {DP3T_KEY_LEN}")
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    if size > limits.max_archive_bytes:
        raise ExportError(f"oversized archive: {size} bytes, limit {limits.max_archive_bytes}")
    scanner = _Scanner(limits, keys_per_chunk=0)
    for data in _stream_export_bin(source, limits):
        scanner.feed(data)
    scanner.finish()
    with _open_zip(source) as zf:
        export_sig = _read_entry(zf, _find_entries(zf, limits)[EXPORT_SIG], limits.max_export_sig_bytes, limits)
    if scanner.size < len(EXPORT_HEADER):
        raise ExportError(f"truncated export.bin: {scanner.size} bytes, shorter than its header")
    if scanner.header != EXPORT_HEADER:
        raise ExportError("wrong export.bin header (want 'EK Export v1' + 4 spaces)")
    digest = scanner.digest()
    trusted = _check_signatures(digest, export_sig, public_keys, limits)
    if scanner.error is not None:
        raise ExportError(scanner.error)
    content = _parse_fields(bytes(scanner.non_key))
    infos = tuple(_info_from_pb(i, EXPORT_BIN) for i in content.signature_infos)
    _check_binding(content, infos, trusted)
    latest_start = _check_content(content, scanner.keys + scanner.revised_keys, limits, now)
    summary = ExportSummary(
        start_timestamp=content.start_timestamp,
        end_timestamp=content.end_timestamp,
        region=_text(content.region, EXPORT_BIN),
        batch_num=content.batch_num,
        batch_size=content.batch_size,
        signature_infos=infos,
        verified_by=trusted[0][0],
        export_sha256=digest,
        key_count=scanner.keys,
        revised_key_count=scanner.revised_keys,
        key_length=key_length,
        latest_start=latest_start,
    )
    return StreamedExport(source, summary, limits)


_VARINT_FIELDS = {2: "transmission_risk_level", 3: "rolling_start", 4: "rolling_period", 5: "report_type", 6: "dso"}


def _uniform_table(chunk: KeyChunk, summary: ExportSummary) -> KeyTable | None:
    data = chunk.data
    if len(data) < 2 or data[1] >= 0x80:
        return None
    row = 2 + data[1]
    if len(data) % row:
        return None
    layout = _row_layout(data[:row], summary.key_length)
    if layout is None:
        return None
    rows = np.frombuffer(data, np.uint8).reshape(-1, row)
    fixed, varint_bytes = layout.fixed_positions, layout.varint_positions
    if not (rows[:, fixed] == rows[0, fixed]).all():
        return None
    if not ((rows[:, varint_bytes] & 0x80) == (rows[0, varint_bytes] & 0x80)).all():
        return None
    values = {name: _varint_column(rows, *place) for name, place in layout.varints.items()}
    if any(int(v.max()) > _MAX_INT32 for v in values.values()) or "rolling_start" not in values:
        return None
    start, n = values["rolling_start"], len(rows)
    period = values.get("rolling_period", np.full(n, MAX_ROLLING_PERIOD, np.int64))
    level = values.get("transmission_risk_level", np.zeros(n, np.int64))
    report = values.get("report_type", np.zeros(n, np.int64))
    ok = (start <= MAX_INTERVAL_NUMBER - MAX_ROLLING_PERIOD) & (period >= 1) & (period <= MAX_ROLLING_PERIOD)
    ok &= (level <= MAX_TRANSMISSION_RISK_LEVEL) & np.isin(report, _REPORT_TYPE_VALUES)
    if "dso" in values:
        zigzag = values["dso"]
        ok &= np.abs((zigzag >> 1) ^ -(zigzag & 1)) <= MAX_DAYS_SINCE_ONSET
    if summary.latest_start is not None:
        ok &= start <= summary.latest_start
    if not ok.all():
        return None
    key_at = layout.key_offset
    key_data = rows[:, key_at : key_at + summary.key_length].tobytes()

    def build_key(i: int) -> PublishedKey:
        one = KeyChunk(chunk.revised, chunk.first + i, 1, data[i * row : (i + 1) * row])
        return parse_key_chunk(one, summary)[0]

    return KeyTable(summary.key_length, key_data, start.tolist(), period.tolist(), build_key)


@dataclass(frozen=True)
class _RowLayout:
    """Where one encoded key entry keeps its fields: bytes that must be equal in every row (tags,
    lengths), bytes of varints (whose continuation bits must be equal), each varint's place."""

    fixed_positions: list[int]
    varint_positions: list[int]
    varints: dict[str, tuple[int, int]]
    key_offset: int


def _row_layout(entry: bytes, key_length: int) -> _RowLayout | None:
    """The layout of one key entry (tag, length, message), or None if it is anything but plain fields
    1-6 once each (then the generic parser decides)."""
    buf, pos, end = bytearray(entry), 2, len(entry)
    fixed, varint_bytes = [0, 1], []
    varints: dict[str, tuple[int, int]] = {}
    key_offset, seen = -1, set()
    while pos < end:
        parsed = _field_header(buf, pos, end)
        if parsed is None or isinstance(parsed, str):
            return None
        field, wire_type, length, body = parsed
        if field in seen or body + length > end:
            return None
        seen.add(field)
        fixed.extend(range(pos, body))
        if field == 1 and wire_type == _LEN and length == key_length:
            key_offset = body
        elif field in _VARINT_FIELDS and wire_type == 0 and length <= 5:
            varint_bytes.extend(range(body, body + length))
            varints[_VARINT_FIELDS[field]] = (body, length)
        else:
            return None
        pos = body + length
    if key_offset < 0:
        return None
    return _RowLayout(fixed, varint_bytes, varints, key_offset)


def _varint_column(rows: np.ndarray, offset: int, length: int) -> np.ndarray:
    value = np.zeros(len(rows), np.int64)
    for i in range(length):
        value |= (rows[:, offset + i] & 0x7F).astype(np.int64) << (7 * i)
    return value


def _parse_fields(fields: bytes) -> Message:
    try:
        return pb.TemporaryExposureKeyExport.FromString(fields)
    except _PROTO_ERRORS:
        raise ExportError(_DECODE_ERROR) from None


def _stream_export_bin(source: BinaryIO, limits: ExportLimits) -> Iterator[bytes]:
    """export.bin's bytes in pieces, with the same zip-level refusals as ``_read_entry``."""
    source.seek(0)
    with _open_zip(source) as zf:
        info = _find_entries(zf, limits)[EXPORT_BIN]
        cap = limits.max_export_bin_bytes
        _check_declared(info, cap, limits)
        total = 0
        try:
            with zf.open(info) as f:
                while data := f.read(STREAM_READ_BYTES):
                    total += len(data)
                    if total > cap:
                        raise ExportError(f"oversized {EXPORT_BIN}: more than {cap} bytes")
                    yield data
        except EOFError:
            raise ExportError(f"truncated {EXPORT_BIN} (compressed data ends early)") from None
        except _ZIP_ERRORS as exc:
            raise ExportError(f"corrupt {EXPORT_BIN}: {_one_line(str(exc))}") from None
        if total != info.file_size:
            raise ExportError(f"truncated {EXPORT_BIN}: {total} of {info.file_size} bytes")


class _Scanner:
    """Frames export.bin's top-level protobuf fields as its bytes arrive, hashing them on the way.

    Only the framing is read here (tags and lengths): key entries are counted and, when
    ``keys_per_chunk`` is set, cut into ``KeyChunk``s; every other field is kept, encoded, for one
    protobuf parse later (proto2 merges repeated top-level fields exactly as a whole-message parse would).
    A framing error is recorded, not raised, so the caller can still give the signature's verdict first.
    """

    def __init__(self, limits: ExportLimits, keys_per_chunk: int) -> None:
        self._cap = limits.max_field_bytes
        self._per_chunk = keys_per_chunk
        self._hash = hashlib.sha256()
        self._buf = bytearray()
        self._chunks: list[KeyChunk] = []
        self.size = 0
        self.header = b""
        self.non_key = bytearray()
        self.keys = 0
        self.revised_keys = 0
        self.error: str | None = None

    def digest(self) -> bytes:
        return self._hash.digest()

    def take_chunks(self) -> list[KeyChunk]:
        chunks, self._chunks = self._chunks, []
        return chunks

    def feed(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        if len(self.header) < len(EXPORT_HEADER):
            need = len(EXPORT_HEADER) - len(self.header)
            self.header += data[:need]
            data = data[need:]
        if self.error is None:
            self._buf += data
            self._frame()

    def finish(self) -> None:
        if self.error is None and self._buf:
            self.error = _DECODE_ERROR

    def _frame(self) -> None:
        buf, pos, end = self._buf, 0, len(self._buf)
        run_start, run_field, run_count = 0, 0, 0
        while pos < end:
            tag_byte = buf[pos]
            if (tag_byte == 0x3A or tag_byte == 0x42) and pos + 1 < end and buf[pos + 1] < 0x80:
                field, length, body = tag_byte >> 3, buf[pos + 1], pos + 2  # the common case: a short key
            else:
                parsed = _field_header(buf, pos, end)
                if parsed is None:
                    break  # incomplete: wait for more bytes
                if isinstance(parsed, str):
                    self.error = parsed
                    return
                field, wire_type, length, body = parsed
                if wire_type != _LEN or field not in (_KEYS_FIELD, _REVISED_KEYS_FIELD):
                    if length > self._cap or len(self.non_key) + body + length - pos > self._cap:
                        raise ExportError(f"export.bin: fields other than keys exceed {self._cap} bytes")
                    if body + length > end:
                        break
                    self._flush_run(run_start, pos, run_field, run_count)
                    run_count = 0
                    self.non_key += buf[pos : body + length]
                    pos = body + length
                    continue
                if length > self._cap:
                    raise ExportError(f"export.bin: a key entry of {length} bytes, limit {self._cap}")
            if body + length > end:
                break
            if field != run_field or run_count == self._per_chunk:
                self._flush_run(run_start, pos, run_field, run_count)
                run_start, run_field, run_count = pos, field, 0
            row, step = body + length - pos, 1
            if row == length + 2:  # a short entry: count the run of entries just like it at once
                room = (end - pos) // row
                if self._per_chunk:
                    room = min(room, self._per_chunk - run_count)
                if room > _MIN_VECTOR_RUN:
                    step = _same_entries(buf, pos, row, room)
            run_count += step
            if field == _KEYS_FIELD:
                self.keys += step
            else:
                self.revised_keys += step
            pos += step * row
        self._flush_run(run_start, pos, run_field, run_count)
        del buf[:pos]

    def _flush_run(self, start: int, stop: int, field: int, count: int) -> None:
        if not count or not self._per_chunk:
            return
        revised = field == _REVISED_KEYS_FIELD
        seen = self.revised_keys if revised else self.keys
        self._chunks.append(KeyChunk(revised, seen - count, count, bytes(self._buf[start:stop])))


_MIN_VECTOR_RUN = 16


def _same_entries(buf: bytearray, pos: int, row: int, room: int) -> int:
    """How many of the next ``room`` ``row``-byte slices from ``pos`` start with the same tag and
    length byte as the first (at least 1): national files are one such run, framed here in C speed."""
    rows = np.frombuffer(buf, np.uint8, count=room * row, offset=pos).reshape(room, row)
    same = (rows[:, 0] == rows[0, 0]) & (rows[:, 1] == rows[0, 1])
    del rows  # the view pins the bytearray, which the caller resizes
    return room if bool(same.all()) else int(np.argmin(same))


def _field_header(buf: bytearray, pos: int, end: int) -> tuple[int, int, int, int] | str | None:
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


def _varint(buf: bytearray, pos: int, end: int) -> tuple[int, int] | str | None:
    value = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    return None if end - pos < 10 else _DECODE_ERROR


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

"""Verifying a GAEN key export streamed from a seekable file (``verify_export_stream``) and reading its
keys afterwards chunk by chunk (``StreamedExport``, ``KeyChunk``, ``parse_key_table``).

Apart from ``export_verify`` because a national list is too large to hold as export.bin plus an object
per key: export.bin is hashed and framed as its bytes arrive, and the keys are decoded later, per chunk,
by a matching worker. The checks both paths share are imported from ``export_verify``, so a file is
refused for the same reasons either way.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from google.protobuf.message import Message

from agent.protocol.export_format import (
    DEFAULT_LIMITS,
    EXPORT_BIN,
    EXPORT_HEADER,
    EXPORT_SIG,
    ExportError,
    ExportLimits,
    PublicKeys,
    SignatureInfo,
)
from agent.protocol.export_verify import (
    _DECODE_ERROR,
    _LEN,
    _PROTO_ERRORS,
    _ZIP_ERRORS,
    _check_binding,
    _check_content,
    _check_declared,
    _check_signatures,
    _check_trusted_keys,
    _field_header,
    _find_entries,
    _info_from_pb,
    _keys_from_pb,
    _one_line,
    _open_zip,
    _read_entry,
    _text,
)
from agent.protocol.proto import gaen_export as pb
from agent.schemes.published import (
    DP3T_KEY_LEN,
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

STREAM_READ_BYTES = _MIB
_KEYS_FIELD, _REVISED_KEYS_FIELD = 7, 8


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
    signature_sha256: bytes
    """The file's ``export_identity``: how it is recognised later without reading export.bin again."""


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


def export_identity(source: BinaryIO, limits: ExportLimits = DEFAULT_LIMITS) -> bytes:
    """SHA-256 of the file's export.sig, read alone (a few hundred bytes at the end of the zip): what
    recognises a file matched before without inflating and hashing its export.bin again.

    Sound because export.sig holds ECDSA signatures over export.bin's SHA-256: a file with the same
    export.sig as a verified one either has the same export.bin, or its signatures do not verify and it
    would be refused; skipping it loses nothing either way. (A re-encoded signature is a new identity, so
    that file is verified and then recognised by its export.bin digest.) ``ExportError`` for a file whose
    zip or export.sig is unreadable."""
    source.seek(0)
    with _open_zip(source) as zf:
        export_sig = _read_entry(zf, _find_entries(zf, limits)[EXPORT_SIG], limits.max_export_sig_bytes, limits)
    return hashlib.sha256(export_sig).digest()


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
        signature_sha256=hashlib.sha256(export_sig).digest(),
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

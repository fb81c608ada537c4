"""The streamed export reader: the same keys as ``verify_export`` on the real example file and on
generated national-size files, every layout, chunk and read boundary; the refusals only it can give."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import TEST_ENIN, TEST_NOW, EnsExample, key_entries, signed_from_entries

from agent.protocol.export import (
    STREAM_READ_BYTES,
    ExportError,
    ExportLimits,
    StreamedExport,
    verify_export,
    verify_export_stream,
    zip_export,
)
from agent.schemes.published import PublishedKey


def streamed_keys(streamed: StreamedExport, per_chunk: int = 2048) -> list[PublishedKey]:
    return [key for keys in streamed.keys(per_chunk) for key in keys]


def table_rows(streamed: StreamedExport) -> tuple[bytes, list[int], list[int]]:
    data, starts, periods = [], [], []
    for table in streamed.tables():
        data.append(table.key_data)
        starts += table.rolling_start
        periods += table.rolling_period
    return b"".join(data), starts, periods


def random_keys(n: int, seed: int, mixed: bool) -> list[PublishedKey]:
    """Keys as a national server writes them (every field set) or, ``mixed``, with optional fields
    left out now and then, so chunks of both layouts occur."""
    rng = random.Random(seed)
    keys = []
    for i in range(n):
        plain = mixed and i % 997 == 0
        keys.append(
            PublishedKey(
                rng.randbytes(16),
                TEST_ENIN - 144 * rng.randrange(1, 15),
                rng.choice((144, 144, 144, 72)),
                transmission_risk_level=rng.randrange(9),
                report_type=0 if plain else 1,
                days_since_onset=None if plain else rng.randrange(-14, 15),
            )
        )
    return keys


def test_the_example_export_streams_to_the_same_content(ens: EnsExample) -> None:
    data = zip_export(ens.export_bin, ens.export_sig)
    whole = verify_export(data, {"some_id": ens.public_key})
    streamed = verify_export_stream(io.BytesIO(data), {"some_id": ens.public_key})
    summary = streamed.summary
    assert (summary.region, summary.batch_num, summary.batch_size) == (whole.region, whole.batch_num, whole.batch_size)
    assert (summary.start_timestamp, summary.end_timestamp) == (whole.start_timestamp, whole.end_timestamp)
    assert summary.signature_infos == whole.signature_infos and summary.verified_by == whole.verified_by
    assert summary.export_sha256 == whole.export_sha256 == hashlib.sha256(ens.export_bin).digest()
    assert streamed_keys(streamed, per_chunk=1) == list(whole.keys)
    assert summary.key_count == len(whole.keys) and summary.revised_key_count == len(whole.revised_keys)
    data_bytes, starts, periods = table_rows(streamed)
    assert data_bytes == b"".join(k.key_data for k in whole.keys)
    assert starts == [k.rolling_start_interval_number for k in whole.keys]
    assert periods == [k.rolling_period for k in whole.keys]


def test_a_mixed_layout_file_streams_to_the_keys_verify_export_reads(signer: ec.EllipticCurvePrivateKey) -> None:
    keys = random_keys(20_000, seed=1, mixed=True)
    data = signed_from_entries(key_entries(keys), signer)
    trusted = {"228": signer.public_key()}
    whole = verify_export(data, trusted, now=TEST_NOW)
    assert list(whole.keys) == keys
    streamed = verify_export_stream(io.BytesIO(data), trusted, now=TEST_NOW)
    assert streamed_keys(streamed, per_chunk=1500) == keys
    tables = list(streamed.tables(1024))
    assert max(len(t) for t in tables) == 1024
    positions = [(n, i, sum(len(t) for t in tables[:n]) + i) for n, t in enumerate(tables) for i in range(len(t))]
    for n, i, position in random.Random(2).sample(positions, 200):  # the few keys a matcher builds back
        assert tables[n].key(i) == keys[position]
    assert table_rows(streamed)[0] == b"".join(k.key_data for k in keys)


def test_a_600k_key_file_streams_in_chunks_to_the_keys_it_holds(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    n = 600_000
    rng = random.Random(3)
    teks = rng.randbytes(16 * n)
    starts = [TEST_ENIN - 144 * (1 + i % 14) for i in range(n)]
    tails = {s: key_entries([PublishedKey(bytes(16), s, 144, 5, 1, 3)])[20:] for s in set(starts)}
    head = key_entries([PublishedKey(bytes(16), starts[0], 144, 5, 1, 3)])[:4]  # tag, length, key's tag+length
    path = tmp_path / "national.zip"
    entries = b"".join(head + teks[16 * i : 16 * i + 16] + tails[starts[i]] for i in range(n))
    path.write_bytes(signed_from_entries(entries, signer))
    del entries
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("export.bin").file_size > 10 * STREAM_READ_BYTES  # many read boundaries
    with path.open("rb") as source:
        streamed = verify_export_stream(source, {"228": signer.public_key()}, now=TEST_NOW)
        assert streamed.summary.key_count == n
        data, got_starts, periods = table_rows(streamed)
        tables = list(streamed.tables())
    assert data == teks
    assert got_starts == starts
    assert periods == [144] * n
    first = sum(len(t) for t in tables[:100])
    assert tables[100].key(5) == PublishedKey(
        teks[16 * (first + 5) : 16 * (first + 6)], starts[first + 5], 144, 5, 1, 3
    )


def test_a_bad_key_deep_in_a_file_is_refused_with_its_position(signer: ec.EllipticCurvePrivateKey) -> None:
    keys = random_keys(5000, seed=4, mixed=False)
    entries = key_entries(keys[:4321]) + _short_key_entry() + key_entries(keys[4322:])
    data = signed_from_entries(entries, signer)
    trusted = {"228": signer.public_key()}
    with pytest.raises(ExportError) as whole:
        verify_export(data, trusted)
    streamed = verify_export_stream(io.BytesIO(data), trusted)
    with pytest.raises(ExportError) as chunked:
        list(streamed.tables())
    assert chunked.value.reason == whole.value.reason == "key 4321: key_data of wrong length 15, want 16"


def _short_key_entry() -> bytes:
    body = b"\x0a\x0f" + bytes(15) + b"\x10\x01\x18" + bytes([0x80, 0x80, 0x80, 0x01]) + b"\x20\x90\x01"
    return b"\x3a" + bytes([len(body)]) + body


def test_a_file_changed_after_it_was_verified_yields_no_keys(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "list.zip"
    path.write_bytes(signed_from_entries(key_entries(random_keys(3000, seed=5, mixed=False)), signer))
    other = signed_from_entries(key_entries(random_keys(3000, seed=6, mixed=False)), signer)
    with path.open("rb") as source:
        streamed = verify_export_stream(source, {"228": signer.public_key()})
        path.write_bytes(other)  # the same open file now reads as another (validly signed) list
        with pytest.raises(ExportError) as refused:
            list(streamed.tables())
    assert refused.value.reason == "export.bin changed while it was read"


def test_a_huge_field_is_refused_before_it_is_buffered(signer: ec.EllipticCurvePrivateKey) -> None:
    region = b"\x1a\x82\x01" + b"x" * 130  # field 3 (region), 130 bytes
    data = signed_from_entries(region + key_entries(random_keys(10, seed=7, mixed=False)), signer)
    limits = ExportLimits(max_field_bytes=100)
    with pytest.raises(ExportError) as refused:
        verify_export_stream(io.BytesIO(data), {"228": signer.public_key()}, limits=limits)
    assert refused.value.reason == "export.bin: fields other than keys exceed 100 bytes"
    big_key = b"\x3a\x80\x01" + b"\x0a\x10" + bytes(16) + b"\x7a\x6e" + bytes(110)  # padded with an unknown field
    with pytest.raises(ExportError) as refused:
        verify_export_stream(
            io.BytesIO(signed_from_entries(big_key, signer)), {"228": signer.public_key()}, limits=limits
        )
    assert refused.value.reason == "export.bin: a key entry of 128 bytes, limit 100"

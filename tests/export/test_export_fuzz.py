"""Hostile bytes at every layer get an ExportError (or, for harmless mutations, a result), never a crash."""

from __future__ import annotations

import io
import zipfile

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.exportkit import (
    TEST_END,
    TEST_INFO,
    TEST_NOW,
    TEST_START,
    export_message,
    pb_key,
    sample_keys,
    zip_signed,
)

from agent.protocol.export import (
    EXPORT_HEADER,
    ExportError,
    ExportLimits,
    VerifiedExport,
    build_export,
    verify_export,
    zip_export,
)

_SIGNER = ec.generate_private_key(ec.SECP256R1())
_TRUSTED = {TEST_INFO.verification_key_id: _SIGNER.public_key()}
_GOOD = build_export(
    sample_keys(4),
    start=TEST_START,
    end=TEST_END,
    region="CH",
    batch_num=1,
    batch_size=1,
    signature_info=TEST_INFO,
    private_key=_SIGNER,
)
with zipfile.ZipFile(io.BytesIO(_GOOD)) as _zf:
    _GOOD_BIN, _GOOD_SIG = _zf.read("export.bin"), _zf.read("export.sig")

# Small caps keep each example cheap while still exercising every limit branch.
_LIMITS = ExportLimits(max_archive_bytes=64 * 1024, max_export_bin_bytes=32 * 1024, max_keys=64)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(data: bytes, key_length: int = 16) -> VerifiedExport | None:
    """What the verifier did; any exception other than ExportError propagates and fails the test."""
    try:
        return verify_export(data, _TRUSTED, limits=_LIMITS, now=TEST_NOW, key_length=key_length)
    except ExportError as exc:
        assert exc.reason and "\n" not in exc.reason
        return None


@_FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    outcome(data)


@_FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_behind_a_zip_signature(tail: bytes) -> None:
    outcome(b"PK\x03\x04" + tail)


@_FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(1, len(_GOOD)),
)
def test_mutated_valid_zip(edits: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(_GOOD)
    for pos, value in edits:
        data[pos] = value
    outcome(bytes(data[:keep]))


@_FUZZ
@given(st.binary(max_size=1024))
def test_signed_garbage_after_the_header(body: bytes) -> None:
    """Validly signed, so the bytes reach the protobuf parser and the content checks."""
    outcome(zip_signed(EXPORT_HEADER + body, _SIGNER))


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_GOOD_BIN) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_signed_mutations_of_a_valid_export_bin(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_GOOD_BIN)
    for pos, value in edits:
        data[pos] = value
    outcome(zip_signed(bytes(data), _SIGNER))


@_FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_signature_file(sig: bytes) -> None:
    outcome(zip_export(_GOOD_BIN, sig))


@_FUZZ
@given(
    st.lists(
        st.builds(
            pb_key,
            key_data=st.binary(max_size=40),
            rsin=st.none() | st.integers(-(2**31), 2**31 - 1),
            period=st.none() | st.integers(-(2**31), 2**31 - 1),
            transmission_risk_level=st.integers(-(2**31), 2**31 - 1),
            days_since_onset_of_symptoms=st.integers(-(2**31), 2**31 - 1),
        ),
        max_size=4,
    ),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)),
    st.sampled_from([16, 32]),
)
def test_signed_exports_with_arbitrary_field_values(
    keys: list[object], start: int, end: int, batch: tuple[int, int], key_length: int
) -> None:
    msg = export_message(keys, start=start, end=end, batch=batch)
    result = outcome(zip_signed(msg, _SIGNER, sig_batch=batch), key_length=key_length)
    if result is not None:
        assert all(len(k.key_data) == key_length and 1 <= k.rolling_period <= 144 for k in result.keys)
        assert 1 <= result.batch_num <= result.batch_size and result.start_timestamp <= result.end_timestamp

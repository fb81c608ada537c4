"""Every way an export file is refused: each case asserts the one-line reason and that nothing comes back."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import (
    TEST_END,
    TEST_ENIN,
    TEST_INFO,
    TEST_NOW,
    TEST_START,
    EnsExample,
    export_message,
    pb_key,
    raw_zip,
    signature_list,
    zip_signed,
)

from agent.protocol.export import (
    EXPORT_HEADER,
    ExportError,
    ExportLimits,
    PublicKeys,
    SignatureInfo,
    verify_export,
    verify_export_stream,
    zip_export,
)
from agent.protocol.proto import gaen_export as pb


def refusal(data: bytes, public_keys: PublicKeys, **kwargs: Any) -> str:
    """The reason ``verify_export`` gives; fails the test if it returns anything instead, or if the
    streamed reader (verify, then read every chunk) accepts the file or refuses it for another reason."""
    with pytest.raises(ExportError) as refused:
        returned = verify_export(data, public_keys, **kwargs)
        pytest.fail(f"accepted, returned {returned!r}")
    reason = refused.value.reason
    assert reason and "\n" not in reason
    if isinstance(data, bytes):
        assert streamed_refusal(data, public_keys, **kwargs) == reason
    return reason


def streamed_refusal(data: bytes, public_keys: PublicKeys, **kwargs: Any) -> str:
    with pytest.raises(ExportError) as refused:
        streamed = verify_export_stream(io.BytesIO(data), public_keys, **kwargs)
        keys = [key for keys in streamed.keys(keys_per_chunk=2) for key in keys]
        pytest.fail(f"streamed reader accepted it, returned {len(keys)} keys")
    return refused.value.reason


def central_header(data: bytes, name: bytes) -> int:
    """Offset of the central directory record of entry ``name``."""
    pos = 0
    while True:
        pos = data.index(b"PK\x01\x02", pos)
        (name_len,) = struct.unpack_from("<H", data, pos + 28)
        if data[pos + 46 : pos + 46 + name_len] == name:
            return pos
        pos += 4


def patch_central(data: bytes, name: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Rewrite one field of an entry's central directory record (where zipfile takes sizes and flags)."""
    out = bytearray(data)
    struct.pack_into(fmt, out, central_header(data, name) + offset, value)
    return bytes(out)


CD_FLAGS, CD_METHOD, CD_COMPRESSED_SIZE, CD_FILE_SIZE = 8, 10, 20, 24


# ----------------------------------------------------------------------------------------- the zip layer


def test_not_a_zip(trusted: PublicKeys) -> None:
    assert refusal(b"EK Export v1    definitely not a zip", trusted) == "not a zip archive"


def test_not_bytes(trusted: PublicKeys) -> None:
    assert refusal("a str", trusted) == "export must be bytes, got str"  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", [10, 100, -22, -1])
def test_truncated_archive(trusted: PublicKeys, good_export: bytes, keep: int) -> None:
    reason = refusal(good_export[:keep], trusted)
    assert reason.startswith("truncated or corrupt zip archive")


def test_missing_export_bin(trusted: PublicKeys, good_export: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(good_export)) as zf:
        sig = zf.read("export.sig")
    assert refusal(raw_zip([("export.sig", sig)]), trusted) == "missing export.bin in zip archive"


def test_missing_export_sig(trusted: PublicKeys) -> None:
    data = raw_zip([("export.bin", EXPORT_HEADER + export_message().SerializeToString())])
    assert refusal(data, trusted) == "missing export.sig in zip archive"


def test_entries_under_other_names_do_not_count(trusted: PublicKeys) -> None:
    data = raw_zip([("dir/export.bin", b"x"), ("EXPORT.SIG", b"y")])
    assert refusal(data, trusted) == "missing export.bin in zip archive"


def test_duplicate_entry_is_ambiguous(trusted: PublicKeys, signer: ec.EllipticCurvePrivateKey) -> None:
    export_bin = EXPORT_HEADER + export_message().SerializeToString()
    sig = signature_list(export_bin, [(TEST_INFO, signer)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name as it writes it
        data = raw_zip([("export.bin", export_bin), ("export.sig", sig), ("export.bin", EXPORT_HEADER)])
    assert refusal(data, trusted) == "duplicate export.bin in zip archive"


def test_too_many_entries(trusted: PublicKeys, good_export: bytes) -> None:
    data = raw_zip([(f"junk{i}", b"") for i in range(17)])
    assert refusal(data, trusted) == "too many zip entries: 17, limit 16"


def test_oversized_archive(trusted: PublicKeys, good_export: bytes) -> None:
    limits = ExportLimits(max_archive_bytes=len(good_export) - 1)
    assert refusal(good_export, trusted, limits=limits).startswith("oversized archive:")


def test_oversized_entry_by_declared_size(trusted: PublicKeys, good_export: bytes) -> None:
    limits = ExportLimits(max_export_bin_bytes=50)
    assert refusal(good_export, trusted, limits=limits).startswith("oversized export.bin: declares")


def test_oversized_signature_file(trusted: PublicKeys, good_export: bytes) -> None:
    limits = ExportLimits(max_export_sig_bytes=20)
    assert refusal(good_export, trusted, limits=limits).startswith("oversized export.sig: declares")


def test_zip_bomb_refused_on_compression_ratio(trusted: PublicKeys) -> None:
    bomb = EXPORT_HEADER + bytes(8 * 1024 * 1024)  # 8 MiB of zeros deflate to about 8 KiB
    data = raw_zip([("export.bin", bomb), ("export.sig", b"")])
    assert refusal(data, trusted).startswith("compression ratio of export.bin too high")


def test_zip_bomb_refused_on_declared_size(trusted: PublicKeys) -> None:
    bomb = EXPORT_HEADER + bytes(4 * 1024 * 1024)
    data = raw_zip([("export.bin", bomb), ("export.sig", b"")])
    limits = ExportLimits(max_export_bin_bytes=1024 * 1024, max_compression_ratio=10_000)
    assert refusal(data, trusted, limits=limits).startswith("oversized export.bin: declares 4194320 bytes")


def test_entry_larger_than_declared_is_not_read_past_the_declaration(trusted: PublicKeys, good_export: bytes) -> None:
    """A central directory that understates the size (to slip under the caps) gets a cut read that fails
    the CRC, never a read of the real length."""
    lying = patch_central(good_export, b"export.bin", CD_FILE_SIZE, "<I", 20)
    assert refusal(lying, trusted).startswith("corrupt export.bin: Bad CRC-32")


def test_compressed_data_shorter_than_declared(trusted: PublicKeys, good_export: bytes) -> None:
    cut = patch_central(good_export, b"export.bin", CD_COMPRESSED_SIZE, "<I", 5)
    assert refusal(cut, trusted).startswith("corrupt export.bin")


def test_encrypted_entry(trusted: PublicKeys, good_export: bytes) -> None:
    encrypted = patch_central(good_export, b"export.sig", CD_FLAGS, "<H", 0x1)
    assert refusal(encrypted, trusted) == "encrypted export.sig"


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_unsupported_compression(trusted: PublicKeys, good_export: bytes, method: int) -> None:
    patched = patch_central(good_export, b"export.bin", CD_METHOD, "<H", method)
    assert refusal(patched, trusted) == f"unsupported compression method {method} for export.bin"


def test_corrupt_compressed_stream(trusted: PublicKeys, good_export: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(good_export)) as zf:
        export_bin, sig = zf.read("export.bin"), zf.read("export.sig")
    data = bytearray(zip_export(export_bin, sig))
    stream_at = data.index(b"export.bin") + len(b"export.bin")  # local header name, then the deflate stream
    data[stream_at : stream_at + 4] = b"\xff\xff\xff\xff"
    assert refusal(bytes(data), trusted).startswith("corrupt export.bin")


# ----------------------------------------------------------------------------------- header and protobuf


def test_wrong_header(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    export_bin = b"EK Export v2    " + export_message().SerializeToString()
    assert refusal(signed_zip(export_bin), trusted).startswith("wrong export.bin header")


def test_export_bin_shorter_than_header(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(b"EK Export"), trusted)
    assert reason == "truncated export.bin: 9 bytes, shorter than its header"


def test_export_sig_not_protobuf(trusted: PublicKeys) -> None:
    data = zip_export(EXPORT_HEADER + export_message().SerializeToString(), b"\x0a\xff\xff\xff")
    assert refusal(data, trusted) == "export.sig: protobuf decode error"


def test_export_bin_not_protobuf_even_though_signed(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    assert refusal(signed_zip(EXPORT_HEADER + b"\x3a\xff\x01"), trusted) == "export.bin: protobuf decode error"


def test_export_bin_protobuf_truncated(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    whole = EXPORT_HEADER + export_message().SerializeToString()
    assert refusal(signed_zip(whole[:-5]), trusted) == "export.bin: protobuf decode error"


def test_region_not_utf8(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    export_bin = EXPORT_HEADER + export_message().SerializeToString()
    assert b"\x1a\x02CH" in export_bin
    bad = export_bin.replace(b"\x1a\x02CH", b"\x1a\x02\xff\xfe")
    assert refusal(signed_zip(bad), trusted).startswith("export.bin: protobuf decode error")


# ---------------------------------------------------------------------------------------------- signatures


def test_no_signature(trusted: PublicKeys) -> None:
    data = zip_export(EXPORT_HEADER + export_message().SerializeToString(), b"")
    assert refusal(data, trusted) == "no signature in export.sig"


def test_signature_by_an_unknown_key(trusted: PublicKeys, other_signer: ec.EllipticCurvePrivateKey) -> None:
    stranger = SignatureInfo("999", "v1")
    data = zip_signed(export_message(infos=[stranger]), other_signer, signers=[(stranger, other_signer)])
    assert refusal(data, trusted) == "signature by an unknown key (key ids in file: '999')"


def test_signature_by_another_key_under_a_trusted_id(
    trusted: PublicKeys, other_signer: ec.EllipticCurvePrivateKey
) -> None:
    data = zip_signed(export_message(), other_signer)
    assert refusal(data, trusted) == "bad signature by key id '228' version 'v1'"


def test_tampered_export_bin(trusted: PublicKeys, good_export: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(good_export)) as zf:
        export_bin, sig = zf.read("export.bin"), zf.read("export.sig")
    tampered = bytearray(export_bin)
    tampered[-1] ^= 0x80
    assert refusal(zip_export(bytes(tampered), sig), trusted).startswith("bad signature")


def test_tampered_real_export_with_its_real_key(ens: EnsExample) -> None:
    tampered = bytearray(ens.export_bin)
    tampered[len(tampered) // 2] ^= 0x01
    reason = refusal(zip_export(bytes(tampered), ens.export_sig), {"some_id": ens.public_key})
    assert reason.startswith("bad signature")


def test_one_bad_trusted_signature_spoils_the_file(
    signer: ec.EllipticCurvePrivateKey, other_signer: ec.EllipticCurvePrivateKey
) -> None:
    second = SignatureInfo("262", "v1")
    export_bin = EXPORT_HEADER + export_message(infos=[TEST_INFO, second]).SerializeToString()
    sig = signature_list(export_bin, [(TEST_INFO, signer), (second, signer)])  # second signed with wrong key
    trust = {"228": signer.public_key(), "262": other_signer.public_key()}
    assert refusal(zip_export(export_bin, sig), trust) == "bad signature by key id '262' version 'v1'"


def test_garbage_signature_bytes(trusted: PublicKeys) -> None:
    export_bin = EXPORT_HEADER + export_message().SerializeToString()
    sigs = pb.TEKSignatureList()
    sigs.signatures.add(
        signature_info=pb.SignatureInfo(verification_key_id="228", verification_key_version="v1"),
        batch_num=1,
        batch_size=1,
        signature=b"\x30\x02\x01",
    )
    reason = refusal(zip_export(export_bin, sigs.SerializeToString()), trusted)
    assert reason == "bad signature by key id '228' version 'v1'"


def test_unsupported_signature_algorithm(trusted: PublicKeys, signer: ec.EllipticCurvePrivateKey) -> None:
    info = SignatureInfo("228", "v1", "1.2.840.10045.4.3.4")  # ECDSA with SHA-512
    data = zip_signed(export_message(infos=[info]), signer, signers=[(info, signer)])
    assert refusal(data, trusted) == "unsupported signature algorithm '1.2.840.10045.4.3.4'"


def test_too_many_signatures(trusted: PublicKeys, signer: ec.EllipticCurvePrivateKey) -> None:
    data = zip_signed(export_message(), signer, signers=[(TEST_INFO, signer)] * 3)
    assert refusal(data, trusted, limits=ExportLimits(max_signatures=2)) == "too many signatures: 3, limit 2"


def test_signature_batch_must_match_the_export(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message(batch=(1, 2)), sig_batch=(2, 2)), trusted)
    assert reason == "signature batch 2 of 2 does not match export batch 1 of 2"


def test_signing_key_must_be_declared_in_export_bin(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message(infos=[SignatureInfo("228", "v0")])), trusted)
    assert reason == "signature key id '228' not declared in export.bin"


def test_hostile_key_id_stays_on_one_line(other_signer: ec.EllipticCurvePrivateKey) -> None:
    evil = SignatureInfo("line\nbreak" + "x" * 100, "v1")
    data = zip_signed(export_message(infos=[evil]), other_signer, signers=[(evil, other_signer)])
    reason = refusal(data, {"228": other_signer.public_key()})
    assert reason.startswith("signature by an unknown key") and len(reason) < 120


# ----------------------------------------------------------------------------------------------- content


def test_nonsense_time_window(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message(start=TEST_END, end=TEST_START)), trusted)
    assert reason == f"nonsense time window: start {TEST_END} after end {TEST_START}"


def test_export_from_the_future(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message()), trusted, now=TEST_START - 3 * 3600)
    assert reason.startswith("export from the future")


@pytest.mark.parametrize("batch", [(0, 0), (2, 1), (0, 1), (-1, 1)])
def test_nonsense_batch(trusted: PublicKeys, signed_zip: Callable[..., bytes], batch: tuple[int, int]) -> None:
    reason = refusal(signed_zip(export_message(batch=batch), sig_batch=batch), trusted)
    assert reason == f"nonsense batch: {batch[0]} of {batch[1]}"


def test_too_many_keys(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    keys = [pb_key(bytes([i]) * 16) for i in range(5)]
    reason = refusal(signed_zip(export_message(keys)), trusted, limits=ExportLimits(max_keys=4))
    assert reason == "too many keys: 5, limit 4"


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_key_data_of_wrong_length(trusted: PublicKeys, signed_zip: Callable[..., bytes], length: int) -> None:
    reason = refusal(signed_zip(export_message([pb_key(b"\x01" * length)])), trusted)
    assert reason == f"key 0: key_data of wrong length {length}, want 16"


def test_dp3t_reader_refuses_gaen_sized_keys(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message([pb_key(b"\x01" * 16)])), trusted, key_length=32)
    assert reason == "key 0: key_data of wrong length 16, want 32"


@pytest.mark.parametrize("period", [0, -1, 145, 1000])
def test_nonsense_rolling_period(trusted: PublicKeys, signed_zip: Callable[..., bytes], period: int) -> None:
    reason = refusal(signed_zip(export_message([pb_key(period=period)])), trusted)
    assert reason == f"key 0: nonsense rolling period {period} (want 1..144)"


def test_nonsense_rolling_start(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message([pb_key(rsin=-5)])), trusted)
    assert reason == "key 0: nonsense rolling_start_interval_number -5"


def test_missing_rolling_start(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    reason = refusal(signed_zip(export_message([pb_key(rsin=None)])), trusted)
    assert reason == "key 0: no rolling_start_interval_number"


def test_key_from_the_future(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    future = TEST_NOW // 600 + 13  # beyond the 2-hour skew allowance
    reason = refusal(signed_zip(export_message([pb_key(rsin=future)])), trusted, now=TEST_NOW)
    assert reason == f"key 0: starts in the future (interval {future})"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"transmission_risk_level": 9}, "transmission_risk_level 9 not in 0..8"),
        ({"days_since_onset_of_symptoms": 15}, "days_since_onset 15 not in -14..14"),
    ],
)
def test_nonsense_key_metadata(
    trusted: PublicKeys, signed_zip: Callable[..., bytes], fields: dict[str, int], expected: str
) -> None:
    reason = refusal(signed_zip(export_message([pb_key(**fields)])), trusted)
    assert reason == f"key 0: {expected}"


def test_bad_revised_key_is_refused_too(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    msg = export_message()
    msg.revised_keys.append(pb_key(b"\x02" * 16, period=0))
    assert refusal(signed_zip(msg), trusted) == "revised key 0: nonsense rolling period 0 (want 1..144)"


def test_only_the_bad_key_is_named_never_its_bytes(trusted: PublicKeys, signed_zip: Callable[..., bytes]) -> None:
    secret = bytes(range(0x40, 0x4F))  # 15 bytes: too short
    keys = [pb_key(b"\x01" * 16, rsin=TEST_ENIN - 144), pb_key(secret)]
    reason = refusal(signed_zip(export_message(keys)), trusted)
    assert reason.startswith("key 1:")
    assert secret.hex() not in reason and repr(secret) not in reason

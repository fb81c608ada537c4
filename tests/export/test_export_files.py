"""Export files that must be accepted: the real signed ENS example, and round trips of our own builds."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import (
    TEST_END,
    TEST_ENIN,
    TEST_INFO,
    TEST_NOW,
    TEST_START,
    EnsExample,
    sample_keys,
    standard_export,
)

from agent.protocol.export import (
    ECDSA_P256_SHA256_OID,
    EXPORT_BIN,
    EXPORT_HEADER,
    EXPORT_SIG,
    ExportError,
    SignatureInfo,
    build_export,
    encode_export_bin,
    verify_export,
    zip_export,
)
from agent.schemes.published import PublishedKey, ReportType


def test_real_ens_export_verifies_and_decodes_byte_for_byte(ens: EnsExample) -> None:
    expected = ens.raw["expected"]
    decoded = expected["decoded"]
    assert hashlib.sha256(ens.export_bin).hexdigest() == expected["sha256_export_bin"]
    assert ens.export_bin[:16].decode("ascii") == expected["header_ascii"]

    result = verify_export(zip_export(ens.export_bin, ens.export_sig), {"some_id": ens.public_key})

    assert result.start_timestamp == decoded["start_timestamp"]
    assert result.end_timestamp == decoded["end_timestamp"]
    assert result.region == decoded["region"]
    assert (result.batch_num, result.batch_size) == (decoded["batch_num"], decoded["batch_size"])
    info = decoded["signature_info"]
    want_info = SignatureInfo(
        verification_key_id=info["verification_key_id"],
        verification_key_version=info["verification_key_version"],
        signature_algorithm=info["signature_algorithm"],
    )
    assert result.signature_infos == (want_info,)
    assert result.verified_by == want_info
    assert [k.key_data.hex() for k in result.keys] == [k["key_data"] for k in decoded["keys"]]
    assert [(k.rolling_start_interval_number, k.rolling_period, k.transmission_risk_level) for k in result.keys] == [
        (k["rolling_start_interval_number"], k["rolling_period"], k["transmission_risk_level"]) for k in decoded["keys"]
    ]
    assert all(k.report_type == ReportType.UNKNOWN and k.days_since_onset is None for k in result.keys)
    assert result.revised_keys == ()
    assert result.export_sha256.hex() == expected["sha256_export_bin"]


def test_real_ens_export_keys_match_the_servers_keys_json(ens: EnsExample) -> None:
    result = verify_export(zip_export(ens.export_bin, ens.export_sig), {"some_id": ens.public_key})
    by_key = {k.key_data: k for k in result.keys}
    for entry in ens.raw["inputs"]["keys_json"]:
        key = by_key[base64.b64decode(entry["key_b64"])]
        assert key.rolling_start_interval_number == entry["rollingStartNumber"]
        assert key.rolling_period == entry["rollingPeriod"]
        assert key.transmission_risk_level == entry["transmissionRisk"]


def test_encoder_reproduces_the_real_export_bin(ens: EnsExample) -> None:
    """Our encoder, fed the decoded content, writes exactly the bytes Google's server wrote."""
    decoded = ens.raw["expected"]["decoded"]
    keys = [
        PublishedKey(
            key_data=bytes.fromhex(k["key_data"]),
            rolling_start_interval_number=k["rolling_start_interval_number"],
            rolling_period=k["rolling_period"],
            transmission_risk_level=k["transmission_risk_level"],
        )
        for k in reversed(decoded["keys"])  # order must not matter: the encoder sorts
    ]
    info = decoded["signature_info"]
    export_bin = encode_export_bin(
        keys,
        start=decoded["start_timestamp"],
        end=decoded["end_timestamp"],
        region=decoded["region"],
        batch_num=decoded["batch_num"],
        batch_size=decoded["batch_size"],
        signature_infos=[
            SignatureInfo(info["verification_key_id"], info["verification_key_version"], info["signature_algorithm"])
        ],
    )
    assert export_bin == ens.export_bin


def test_real_ens_export_refused_with_another_key(ens: EnsExample, signer: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ExportError) as refused:
        verify_export(zip_export(ens.export_bin, ens.export_sig), {"some_id": signer.public_key()})
    assert refused.value.reason.startswith("bad signature by key id 'some_id'")


def test_real_ens_export_refused_with_any_byte_tampered(ens: EnsExample) -> None:
    for pos in (0, 15, 16, 40, len(ens.export_bin) - 1):
        tampered = bytearray(ens.export_bin)
        tampered[pos] ^= 0x01
        with pytest.raises(ExportError) as refused:
            verify_export(zip_export(bytes(tampered), ens.export_sig), {"some_id": ens.public_key})
        want = "wrong export.bin header" if pos < 16 else "bad signature"
        assert refused.value.reason.startswith(want), pos


def test_round_trip_of_our_own_build(signer: ec.EllipticCurvePrivateKey) -> None:
    keys = sample_keys(5)
    revised = [
        PublishedKey(
            key_data=b"\xaa" * 16,
            rolling_start_interval_number=TEST_ENIN - 288,
            rolling_period=100,
            report_type=ReportType.REVOKED,
        )
    ]
    data = standard_export(signer, keys, batch_num=2, batch_size=3, revised_keys=revised)
    result = verify_export(data, {"228": signer.public_key()}, now=TEST_NOW)
    assert sorted(result.keys, key=lambda k: k.key_data) == sorted(keys, key=lambda k: k.key_data)
    assert result.revised_keys == tuple(revised)
    assert (result.start_timestamp, result.end_timestamp, result.region) == (TEST_START, TEST_END, "CH")
    assert (result.batch_num, result.batch_size) == (2, 3)
    assert result.signature_infos == (TEST_INFO,)
    assert result.verified_by.signature_algorithm == ECDSA_P256_SHA256_OID


def test_build_writes_keys_sorted_not_in_upload_order(signer: ec.EllipticCurvePrivateKey) -> None:
    keys = sample_keys(6)
    shuffled = [keys[i] for i in (3, 0, 5, 1, 4, 2)]
    data = standard_export(signer, shuffled)
    result = verify_export(data, {"228": signer.public_key()})
    assert [k.key_data for k in result.keys] == sorted(k.key_data for k in keys)


def test_build_is_a_zip_with_exactly_the_two_entries(good_export: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(good_export)) as zf:
        assert sorted(zf.namelist()) == [EXPORT_BIN, EXPORT_SIG]
        assert zf.read(EXPORT_BIN).startswith(EXPORT_HEADER)


def test_build_is_deterministic_apart_from_the_signature(signer: ec.EllipticCurvePrivateKey) -> None:
    def export_bin() -> bytes:
        data = standard_export(signer)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.read(EXPORT_BIN)

    assert export_bin() == export_bin()


def test_dp3t_day_keys_travel_in_the_same_container(signer: ec.EllipticCurvePrivateKey) -> None:
    keys = sample_keys(3, length=32)
    data = standard_export(signer, keys)
    result = verify_export(data, {"228": signer.public_key()}, key_length=32)
    assert {k.key_data for k in result.keys} == {k.key_data for k in keys}
    with pytest.raises(ExportError) as refused:
        verify_export(data, {"228": signer.public_key()})  # a GAEN reader wants 16-byte keys
    assert "key_data of wrong length 32, want 16" in refused.value.reason


def test_several_signers_and_the_verifier_picks_by_key_id(
    signer: ec.EllipticCurvePrivateKey, other_signer: ec.EllipticCurvePrivateKey
) -> None:
    other_info = SignatureInfo("262", "v2")
    data = standard_export(signer, extra_signers=[(other_info, other_signer)])
    assert verify_export(data, {"228": signer.public_key()}).verified_by == TEST_INFO
    assert verify_export(data, {"262": other_signer.public_key()}).verified_by == other_info
    both = verify_export(data, {"228": signer.public_key(), "262": other_signer.public_key()})
    assert both.signature_infos == (TEST_INFO, other_info)
    pinned = verify_export(data, {("262", "v2"): other_signer.public_key()})
    assert pinned.verified_by == other_info


def test_a_version_pin_does_not_match_another_version(signer: ec.EllipticCurvePrivateKey) -> None:
    data = standard_export(signer)
    with pytest.raises(ExportError) as refused:
        verify_export(data, {("228", "v2"): signer.public_key()})
    assert refused.value.reason.startswith("signature by an unknown key")


def test_empty_export_is_valid(signer: ec.EllipticCurvePrivateKey) -> None:
    data = standard_export(signer, [])
    assert verify_export(data, {"228": signer.public_key()}).keys == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keys": sample_keys(1) + sample_keys(1, length=32)[:1]}, "one kind of key"),
        ({"start": TEST_END + 1}, "start <= end"),
        ({"batch_num": 0}, "batch_num"),
        ({"batch_num": 2, "batch_size": 1}, "batch_num"),
    ],
)
def test_build_refuses_what_the_verifier_would_refuse(
    signer: ec.EllipticCurvePrivateKey, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "keys": sample_keys(),
        "start": TEST_START,
        "end": TEST_END,
        "region": "CH",
        "batch_num": 1,
        "batch_size": 1,
        "signature_info": TEST_INFO,
        "private_key": signer,
    }
    args.update(kwargs)
    keys = args.pop("keys")
    with pytest.raises(ValueError, match=message):
        build_export(keys, **args)  # type: ignore[arg-type]


def test_build_refuses_a_key_on_another_curve() -> None:
    with pytest.raises(ValueError, match="P-256"):
        build_export(
            sample_keys(),
            start=TEST_START,
            end=TEST_END,
            region="CH",
            batch_num=1,
            batch_size=1,
            signature_info=TEST_INFO,
            private_key=ec.generate_private_key(ec.SECP384R1()),
        )


def test_verifier_refuses_a_misconfigured_trust_store(good_export: bytes) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="P-256"):
        verify_export(good_export, {"228": p384})

"""RFC 9474 RSABSSA-SHA384-PSS-Randomized: the RFC's Appendix A vector byte for byte, and each check the
RFC requires refusing what it must."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.protocol import blind_rsa

VECTOR = json.loads((Path(__file__).parent.parent / "data" / "rfc9474_rsabssa_sha384_pss_randomized.json").read_text())


def _h(name: str) -> bytes:
    return bytes.fromhex(VECTOR[name])


def _i(name: str) -> int:
    return int(VECTOR[name], 16)


def _vector_key() -> rsa.RSAPrivateKey:
    p, q, e, d = _i("p"), _i("q"), _i("e"), _i("d")
    n = p * q
    assert n == _i("n")
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, n)
    )
    return numbers.private_key()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return _vector_key()


def test_vector_names_its_source() -> None:
    assert VECTOR["variant"] == blind_rsa.VARIANT
    assert "RFC 9474" in VECTOR["source"]


def test_rfc9474_vector_byte_for_byte(key: rsa.RSAPrivateKey) -> None:
    pk = key.public_key()
    prepared = blind_rsa.prepare_with(_h("msg"), _h("msg_prefix"))
    assert prepared == _h("prepared_msg")
    encoded = blind_rsa.emsa_pss_encode(prepared, pk.key_size - 1, _h("salt"))
    assert encoded == _h("encoded_msg")
    r = pow(_i("inv"), -1, _i("n"))
    blinded = blind_rsa.blind_with(pk, prepared, _h("salt"), r)
    assert blinded.inv == _i("inv")
    assert blinded.blinded_msg == _h("blinded_msg")
    blind_sig = blind_rsa.blind_sign(key, blinded.blinded_msg)
    assert blind_sig == _h("blind_sig")
    sig = blind_rsa.finalize(pk, prepared, blind_sig, blinded.inv)
    assert sig == _h("sig")
    assert blind_rsa.verify(pk, prepared, sig)


def test_signature_is_standard_rsassa_pss(key: rsa.RSAPrivateKey) -> None:
    """The finalized signature verifies with the library's own RSASSA-PSS (SHA-384, MGF1-SHA384, 48)."""
    pk = key.public_key()
    prepared = blind_rsa.prepare(b"a submission token")
    blinded = blind_rsa.blind(pk, prepared)
    sig = blind_rsa.finalize(pk, prepared, blind_rsa.blind_sign(key, blinded.blinded_msg), blinded.inv)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    pk.verify(sig, prepared, pss, hashes.SHA384())
    with pytest.raises(InvalidSignature):
        pk.verify(sig, prepared + b"x", pss, hashes.SHA384())


def test_fresh_randomness_every_time(key: rsa.RSAPrivateKey) -> None:
    pk = key.public_key()
    a, b = blind_rsa.prepare(b"m"), blind_rsa.prepare(b"m")
    assert a != b and a[32:] == b[32:] == b"m"
    assert blind_rsa.blind(pk, a).blinded_msg != blind_rsa.blind(pk, a).blinded_msg


def test_signer_refuses_out_of_range_and_wrong_size(key: rsa.RSAPrivateKey) -> None:
    k = blind_rsa.modulus_len(key.public_key())
    with pytest.raises(blind_rsa.BlindSignatureError, match="out of range"):
        blind_rsa.blind_sign(key, _i("n").to_bytes(k, "big"))
    with pytest.raises(blind_rsa.BlindSignatureError, match="out of range"):
        blind_rsa.blind_sign(key, b"\xff" * k)
    with pytest.raises(blind_rsa.BlindSignatureError, match="input size"):
        blind_rsa.blind_sign(key, b"\x01" * (k - 1))


def test_finalize_refuses_a_wrong_blind_signature(key: rsa.RSAPrivateKey) -> None:
    pk = key.public_key()
    prepared = blind_rsa.prepare(b"m")
    blinded = blind_rsa.blind(pk, prepared)
    good = blind_rsa.blind_sign(key, blinded.blinded_msg)
    bad = bytes([good[0] ^ 1]) + good[1:]
    with pytest.raises(blind_rsa.BlindSignatureError, match="invalid signature"):
        blind_rsa.finalize(pk, prepared, bad, blinded.inv)
    with pytest.raises(blind_rsa.BlindSignatureError, match="input size"):
        blind_rsa.finalize(pk, prepared, good[1:], blinded.inv)
    other = blind_rsa.blind(pk, blind_rsa.prepare(b"m"))
    with pytest.raises(blind_rsa.BlindSignatureError, match="invalid signature"):
        blind_rsa.finalize(pk, prepared, good, other.inv)


def test_blind_refuses_non_invertible_blind_and_non_coprime_message(key: rsa.RSAPrivateKey) -> None:
    pk = key.public_key()
    prepared = _h("prepared_msg")
    with pytest.raises(blind_rsa.BlindSignatureError, match="blinding error"):
        blind_rsa.blind_with(pk, prepared, _h("salt"), _i("p"))
    with pytest.raises(blind_rsa.BlindSignatureError, match="invalid input"):
        blind_rsa.blind_with(pk, prepared, _h("salt"), 0)


def test_verify_refuses_tampering(key: rsa.RSAPrivateKey) -> None:
    pk = key.public_key()
    sig = _h("sig")
    assert not blind_rsa.verify(pk, _h("msg"), sig)  # the unprepared message is not what was signed
    assert not blind_rsa.verify(pk, _h("prepared_msg"), sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not blind_rsa.verify(pk, _h("prepared_msg"), _i("n").to_bytes(len(sig), "big"))

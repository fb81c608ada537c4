"""RFC 9474 RSABSSA-SHA384-PSS-Randomized: the RFC's Appendix A vector byte for byte, and each check the
RFC requires refusing what it must. BlindSigner's two RSASP1 paths (libcrypto and the pure-Python
fallback) give the vector byte for byte, agree on random inputs, refuse the same bad inputs, never return
a result that fails the signer's own check, and sign correctly from several threads at once."""

from __future__ import annotations

import gc
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agent.protocol import _fastrsa, blind_rsa
from agent.schemes._libcrypto import libcrypto

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


needs_libcrypto = pytest.mark.skipif(libcrypto() is None, reason="needs the system's OpenSSL 3 libcrypto")


@pytest.fixture(scope="module", params=["libcrypto", "pure"])
def signer(request: pytest.FixtureRequest, key: rsa.RSAPrivateKey) -> blind_rsa.BlindSigner:
    native = request.param == "libcrypto"
    if native and libcrypto() is None:
        pytest.skip("needs the system's OpenSSL 3 libcrypto")
    made = blind_rsa.BlindSigner(key, native=native)
    assert made.native is native
    return made


def _random_representative(n: int, k: int) -> bytes:
    return secrets.randbelow(n).to_bytes(k, "big")


def test_signer_gives_the_rfc9474_vector_on_both_paths(signer: blind_rsa.BlindSigner) -> None:
    pk = signer.key.public_key()
    blind_sig = signer.sign(_h("blinded_msg"))
    assert blind_sig == _h("blind_sig")
    assert blind_rsa.finalize(pk, _h("prepared_msg"), blind_sig, _i("inv")) == _h("sig")


@needs_libcrypto
def test_fast_and_pure_paths_agree_on_random_inputs() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fast, pure = blind_rsa.BlindSigner(key), blind_rsa.BlindSigner(key, native=False)
    assert fast.native and not pure.native
    n, k = key.public_key().public_numbers().n, blind_rsa.modulus_len(key.public_key())
    edges = [bytes(k), (1).to_bytes(k, "big"), (n - 1).to_bytes(k, "big")]
    for m in edges + [_random_representative(n, k) for _ in range(40)]:
        assert fast.sign(m) == pure.sign(m)


def test_refuses_wrong_size_and_out_of_range(signer: blind_rsa.BlindSigner) -> None:
    k = blind_rsa.modulus_len(signer.key.public_key())
    with pytest.raises(blind_rsa.BlindSignatureError, match="out of range"):
        signer.sign(_i("n").to_bytes(k, "big"))
    with pytest.raises(blind_rsa.BlindSignatureError, match="out of range"):
        signer.sign(b"\xff" * k)
    with pytest.raises(blind_rsa.BlindSignatureError, match="input size"):
        signer.sign(b"\x01" * (k - 1))
    with pytest.raises(blind_rsa.BlindSignatureError, match="input size"):
        signer.sign(b"\x01" * (k + 1))
    assert signer.sign(_h("blinded_msg")) == _h("blind_sig")  # a refusal leaves the signer working


@needs_libcrypto
def test_a_faulty_private_operation_is_refused(key: rsa.RSAPrivateKey) -> None:
    """A fault cannot be provoked inside OpenSSL from here, so the signer's private state is swapped for
    another key's of the same size (a real EVP_PKEY whose answers fail the check under the public key)."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=key.key_size)
    signer = blind_rsa.BlindSigner(key)
    signer._native_sk = _fastrsa.NativeRsaKey.load_private(libcrypto(), other)
    small = (2).to_bytes(blind_rsa.modulus_len(key.public_key()), "big")  # below both moduli: OpenSSL signs it
    assert signer._native_sk is not None and signer._native_sk.rsasp1(small) is not None
    with pytest.raises(blind_rsa.BlindSignatureError, match="signing failure"):
        signer.sign(small)


@needs_libcrypto
def test_eight_threads_sign_correctly_at_once(key: rsa.RSAPrivateKey) -> None:
    fast = blind_rsa.BlindSigner(key)
    n, e = _i("n"), _i("e")
    k = blind_rsa.modulus_len(key.public_key())
    inputs = [_random_representative(n, k) for _ in range(8 * 25)]
    with ThreadPoolExecutor(8) as pool:
        signed = list(pool.map(fast.sign, inputs))
    for m, s in zip(inputs, signed, strict=True):
        assert pow(int.from_bytes(s, "big"), e, n) == int.from_bytes(m, "big")


@needs_libcrypto
def test_the_evp_pkey_is_freed_with_its_holder(key: rsa.RSAPrivateKey) -> None:
    loaders = (
        lambda: _fastrsa.NativeRsaKey.load_private(libcrypto(), key),
        lambda: _fastrsa.NativeRsaKey.load_public(libcrypto(), key.public_key()),
    )
    for load in loaders:
        native = load()
        assert native is not None
        freed = native.freed
        assert freed.alive
        del native
        gc.collect()
        assert not freed.alive


def test_no_libcrypto_means_the_pure_path(key: rsa.RSAPrivateKey) -> None:
    assert _fastrsa.NativeRsaKey.load_private(None, key) is None
    assert _fastrsa.NativeRsaKey.load_public(None, key.public_key()) is None


def test_blind_sign_keeps_its_one_call_form(key: rsa.RSAPrivateKey) -> None:
    assert blind_rsa.blind_sign(key, _h("blinded_msg")) == _h("blind_sig")
    with pytest.raises(blind_rsa.BlindSignatureError, match="input size"):
        blind_rsa.blind_sign(key, os.urandom(8))


def test_the_path_taken_is_logged_at_debug_only(key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="agent.protocol.blind_rsa")
    blind_rsa.BlindSigner(key, native=False)
    assert [(r.levelname, "pure Python" in r.getMessage()) for r in caplog.records] == [("DEBUG", True)]


@needs_libcrypto
def test_a_libcrypto_that_answers_wrongly_is_not_used(key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """A libcrypto that takes the key but answers wrongly cannot be had here, so the loader is replaced
    (a mock at that boundary) by one giving a real EVP_PKEY of another key: the signer's probe catches it
    and it signs in pure Python, correctly."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=key.key_size)
    load = _fastrsa.NativeRsaKey.load_private
    monkeypatch.setattr(_fastrsa.NativeRsaKey, "load_private", lambda lib, sk: load(lib, other))
    signer = blind_rsa.BlindSigner(key)
    assert not signer.native
    assert signer.sign(_h("blinded_msg")) == _h("blind_sig")

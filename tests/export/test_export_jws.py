"""The ES256 ``Signature`` header: RFC 7515 known answers, the DP-3T claims, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol.jws import (
    SignatureError,
    b64url_decode,
    b64url_encode,
    content_hash,
    sign_compact,
    sign_response,
    verify_compact,
    verify_response,
)

RFC = json.loads((Path(__file__).resolve().parent.parent / "data" / "rfc7515_a3_es256.json").read_text())
NOW = 1_700_000_000
BODY = b"PK\x03\x04 pretend this is an export zip"


def _int(b64: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)), "big")


@pytest.fixture(scope="module")
def rfc_private() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_int(RFC["jwk"]["d"]), ec.SECP256R1())


@pytest.fixture(scope="module")
def rfc_public() -> ec.EllipticCurvePublicKey:
    jwk = RFC["jwk"]
    return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()).public_key()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def refusal(body: bytes, token: str, public_key: ec.EllipticCurvePublicKey, **kwargs: object) -> str:
    with pytest.raises(SignatureError) as refused:
        returned = verify_response(body, token, public_key, **kwargs)  # type: ignore[arg-type]
        pytest.fail(f"accepted, returned {returned!r}")
    assert refused.value.reason and "\n" not in refused.value.reason
    return refused.value.reason


def forge(header: dict[str, object] | bytes, claims: dict[str, object] | bytes, signature: bytes) -> str:
    def enc(part: dict[str, object] | bytes) -> str:
        return b64url_encode(part if isinstance(part, bytes) else json.dumps(part).encode())

    return f"{enc(header)}.{enc(claims)}.{b64url_encode(signature)}"


def good_claims(body: bytes = BODY, **overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "content-hash": base64.b64encode(hashlib.sha256(body).digest()).decode(),
        "hash-alg": "sha-256",
        "iss": "dp3t",
        "iat": NOW,
        "exp": NOW + 3600,
    }
    claims.update(overrides)
    return claims


def es256(claims: dict[str, object] | bytes, key: ec.EllipticCurvePrivateKey, header: dict[str, object]) -> str:
    """A token signed properly by ``key`` but with whatever header and claims a test needs."""
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return sign_compact(payload, key, header=header)


# ------------------------------------------------------------------------------------------- known answers


def test_rfc7515_a3_key_pair_is_consistent(
    rfc_private: ec.EllipticCurvePrivateKey, rfc_public: ec.EllipticCurvePublicKey
) -> None:
    assert rfc_private.public_key().public_numbers() == rfc_public.public_numbers()


def test_rfc7515_a3_token_verifies(rfc_public: ec.EllipticCurvePublicKey) -> None:
    result = verify_compact(RFC["token"], rfc_public)
    assert result.header == json.loads(RFC["protected_header_utf8"])
    assert result.payload == RFC["payload_utf8"].encode()


def test_rfc7515_a3_token_with_one_bit_flipped_fails(rfc_public: ec.EllipticCurvePublicKey) -> None:
    head, payload, sig = RFC["token"].split(".")
    raw = bytearray(b64url_decode(sig))
    raw[40] ^= 0x01
    with pytest.raises(SignatureError, match="bad signature"):
        verify_compact(f"{head}.{payload}.{b64url_encode(bytes(raw))}", rfc_public)


def test_header_encoding_is_the_rfcs(rfc_private: ec.EllipticCurvePrivateKey) -> None:
    """{"alg":"ES256"} encodes to exactly the RFC's first segment; the payload segment is the payload."""
    token = sign_compact(RFC["payload_utf8"].encode(), rfc_private)
    rfc_head, rfc_payload, _ = RFC["token"].split(".")
    head, payload, _ = token.split(".")
    assert (head, payload) == (rfc_head, rfc_payload)


def test_signature_is_raw_r_s_that_cryptography_verifies_as_der(
    rfc_private: ec.EllipticCurvePrivateKey,
) -> None:
    token = sign_compact(b"{}", rfc_private)
    head, payload, sig = token.split(".")
    raw = b64url_decode(sig)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    rfc_private.public_key().verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))


def test_content_hash_of_the_empty_body() -> None:
    """A 204 has an empty body; SHA-256("") in standard base64 is a published constant."""
    assert content_hash(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_response_token_encodes_the_dp3t_claims(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(b"", key, now=NOW, ttl=14 * 86400, extra_claims={"key-bundle-tag": "1700000000000"})
    head, payload, _ = token.split(".")
    assert head == "eyJhbGciOiJFUzI1NiJ9"  # {"alg":"ES256"}
    expected = (
        '{"content-hash":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","hash-alg":"sha-256","iss":"dp3t",'
        f'"iat":{NOW},"exp":{NOW + 14 * 86400},"key-bundle-tag":"1700000000000"}}'
    )
    assert b64url_decode(payload) == expected.encode()


def test_key_id_goes_in_the_protected_header(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=60, key_id="v1")
    assert verify_compact(token, key.public_key()).header == {"alg": "ES256", "kid": "v1"}


# --------------------------------------------------------------------------------------------- round trip


def test_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=3600, issuer="proxitrace", extra_claims={"key-bundle-tag": "7"})
    claims = verify_response(BODY, token, key.public_key(), now=NOW + 3599, issuer="proxitrace")
    assert claims == {
        "content-hash": content_hash(BODY),
        "hash-alg": "sha-256",
        "iss": "proxitrace",
        "iat": NOW,
        "exp": NOW + 3600,
        "key-bundle-tag": "7",
    }


def test_accepts_a_token_from_another_es256_implementation(key: ec.EllipticCurvePrivateKey) -> None:
    """Signed here with cryptography directly and jjwt-style JSON spacing, not through sign_compact."""
    head = b64url_encode(b'{"alg": "ES256"}')
    payload = b64url_encode(json.dumps(good_claims(), indent=1).encode())
    der = key.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    token = f"{head}.{payload}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    assert verify_response(BODY, token, key.public_key(), now=NOW)["iss"] == "dp3t"


# ------------------------------------------------------------------------------------------------ refusals


_DUPLICATE_ALG = b64url_encode(b'{"alg":"ES256","alg":"none"}')
_NOT_UTF8 = b64url_encode(bytes([0xFF, 0xFE]))
_DEEP = b64url_encode(b"[" * 10_000)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJFUzI1NiJ9.e30=.AAAA",  # padding is not base64url-without-padding
        "eyJhbGciOiJFUzI1NiJ9.e30.AA+A",  # '+' is not base64url
        "eyJhbGciOiJFUzI1NiJ9.e31.AAAA",  # non-canonical tail bits
        "eyJhbGciOiJFUzI1NiJ9.e30.A",  # impossible length
        "e30.e30.AAAA",  # header {} without alg
        f"{b64url_encode(b'not json')}.e30.AAAA",
        f"{b64url_encode(b'[1]')}.e30.AAAA",
        f"{_DUPLICATE_ALG}.e30.AAAA",
        f"{_NOT_UTF8}.e30.AAAA",
        f"{_DEEP}.e30.AAAA",
        "x" * 20_000,
    ],
)
def test_malformed_tokens(key: ec.EllipticCurvePrivateKey, token: str) -> None:
    assert refusal(BODY, token, key.public_key(), now=NOW).startswith("malformed token")


def test_alg_none_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = forge({"alg": "none"}, good_claims(), b"")
    assert refusal(BODY, token, key.public_key(), now=NOW) == "alg 'none' refused, only ES256 is accepted"


def test_hs256_with_the_public_key_as_secret_refused(key: ec.EllipticCurvePrivateKey) -> None:
    """The classic key-confusion forgery: HMAC keyed with the (public) verification key."""
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64url_encode(b'{"alg":"HS256"}')
    payload = b64url_encode(json.dumps(good_claims()).encode())
    mac = hmac.new(public_pem, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{head}.{payload}.{b64url_encode(mac)}"
    assert refusal(BODY, token, key.public_key(), now=NOW) == "alg 'HS256' refused, only ES256 is accepted"


def test_other_ecdsa_algs_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = forge({"alg": "ES384"}, good_claims(), bytes(96))
    assert refusal(BODY, token, key.public_key(), now=NOW).startswith("alg 'ES384' refused")


def test_signature_by_another_key(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = sign_response(BODY, other, now=NOW, ttl=60)
    assert refusal(BODY, token, key.public_key(), now=NOW) == "bad signature"


def test_der_signature_instead_of_raw_refused(key: ec.EllipticCurvePrivateKey) -> None:
    head = b64url_encode(b'{"alg":"ES256"}')
    payload = b64url_encode(json.dumps(good_claims()).encode())
    der = key.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    token = f"{head}.{payload}.{b64url_encode(der)}"
    assert refusal(BODY, token, key.public_key(), now=NOW).startswith("bad signature: ")


def test_tampered_claims_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=60)
    head, _, sig = token.split(".")
    later = b64url_encode(json.dumps(good_claims(exp=NOW + 10**6)).encode())
    assert refusal(BODY, f"{head}.{later}.{sig}", key.public_key(), now=NOW) == "bad signature"


def test_content_hash_mismatch(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=60)
    reason = refusal(BODY + b"!", token, key.public_key(), now=NOW)
    assert reason == "content-hash mismatch: the body is not the one that was signed"


def test_expired(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=3600)
    assert verify_response(BODY, token, key.public_key(), now=NOW + 3600 + 60)
    reason = refusal(BODY, token, key.public_key(), now=NOW + 3600 + 61)
    assert reason == f"expired at {NOW + 3600}, now is {NOW + 3661}"
    assert refusal(BODY, token, key.public_key(), now=NOW + 3601, leeway=0).startswith("expired")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (good_claims(exp=None), "malformed token: no exp claim"),
        (good_claims(exp="tomorrow"), "malformed token: exp is not a number"),
        (good_claims(exp=True), "malformed token: exp is not a number"),
        (good_claims(exp=10**400), "malformed token: exp is not a finite number"),
        (good_claims(iat=NOW + 3600), f"iat {NOW + 3600} is in the future, now is {NOW}"),
        (good_claims(nbf=NOW + 3600), f"nbf {NOW + 3600} is in the future, now is {NOW}"),
        (good_claims(**{"hash-alg": "md5"}), "unsupported hash-alg 'md5', want sha-256"),
        (good_claims(**{"content-hash": 5}), "malformed token: content-hash claim missing or not a string"),
        (good_claims(**{"content-hash": "not*base64"}), "malformed token: content-hash is not base64"),
        (b"[]", "malformed token: payload is not a JSON object"),
        (b'{"exp": NaN}', "malformed token: payload is not JSON"),
    ],
)
def test_claim_refusals(key: ec.EllipticCurvePrivateKey, claims: dict[str, object] | bytes, reason: str) -> None:
    if isinstance(claims, dict):
        claims = {k: v for k, v in claims.items() if v is not None}
    token = es256(claims, key, {})
    assert refusal(BODY, token, key.public_key(), now=NOW) == reason


def test_issuer_checked_when_asked(key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_response(BODY, key, now=NOW, ttl=60, issuer="evil")
    assert verify_response(BODY, token, key.public_key(), now=NOW)["iss"] == "evil"
    assert refusal(BODY, token, key.public_key(), now=NOW, issuer="dp3t") == "issuer 'evil' is not 'dp3t'"


def test_crit_header_refused(key: ec.EllipticCurvePrivateKey) -> None:
    token = es256(good_claims(), key, {"crit": ["exp-policy"], "exp-policy": 1})
    assert refusal(BODY, token, key.public_key(), now=NOW) == "unsupported critical header parameters (crit)"


_FUZZ_KEY = ec.generate_private_key(ec.SECP256R1())
_TOKENISH = r"[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,90}"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.from_regex(_TOKENISH, fullmatch=True))
def test_hostile_tokens_only_ever_raise_signature_error(token: str) -> None:
    public = _FUZZ_KEY.public_key()
    try:
        verify_response(BODY, token, public, now=NOW)
    except SignatureError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        pytest.fail("a random token was accepted")


# ------------------------------------------------------------------------------------------- misuse at build


def test_reserved_claims_cannot_be_overridden(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="exp"):
        sign_response(BODY, key, now=NOW, ttl=60, extra_claims={"exp": NOW + 10**9})


def test_ttl_must_be_positive(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="ttl"):
        sign_response(BODY, key, now=NOW, ttl=0)


def test_only_p256_keys(key: ec.EllipticCurvePrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        sign_response(BODY, p384, now=NOW, ttl=60)
    token = sign_response(BODY, key, now=NOW, ttl=60)
    with pytest.raises(ValueError, match="P-256"):
        verify_response(BODY, token, p384.public_key(), now=NOW)


def test_header_alg_cannot_be_overridden(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="ES256"):
        sign_compact(b"{}", key, header={"alg": "none"})

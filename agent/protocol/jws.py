"""The ``Signature`` header of list downloads: an ES256 compact JWS binding the body to an expiry.

The export zip is signed on its own, but that signature never expires, so a network attacker could serve
an old list as the current one (hiding new keys). The DP-3T v2 backend therefore also signs every download
response: a JWT whose ``content-hash`` claim is the SHA-256 of the body and whose ``exp`` bounds how long
the response may be replayed. We speak the same claims so DP-3T clients and servers interoperate:
``content-hash`` (standard base64 of the digest), ``hash-alg`` = ``sha-256``, ``iss``, ``iat``, ``exp``,
plus response headers such as the bundle tag as extra claims.

Only ES256 is accepted. The algorithm comes from the token, so anything else (``none``, HS256 with the
public key as the secret) is refused before any crypto runs. ES256 signatures in JWS are the raw r||s
(32 + 32 bytes, RFC 7518 §3.4), not DER. Written on ``cryptography`` alone; pure, time is a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALG = "ES256"
HASH_ALG = "sha-256"
DEFAULT_ISSUER = "dp3t"
RESERVED_CLAIMS = frozenset({"content-hash", "hash-alg", "iss", "iat", "exp"})

_COORD_LEN = 32
_SIG_LEN = 2 * _COORD_LEN
_MAX_TOKEN_LEN = 16 * 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class SignatureError(Exception):
    """A response signature was refused; ``reason`` is one line and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedJws:
    """A compact JWS whose ES256 signature checked out: its protected header and raw payload."""

    header: dict[str, Any]
    payload: bytes


# ------------------------------------------------------------------------------------- compact ES256 JWS


def sign_compact(
    payload: bytes, private_key: ec.EllipticCurvePrivateKey, *, header: Mapping[str, Any] | None = None
) -> str:
    """``BASE64URL(header).BASE64URL(payload).BASE64URL(r||s)`` with ``alg`` ES256 (extra header fields
    such as ``kid`` from ``header``)."""
    _check_p256(private_key.curve)
    protected = {"alg": ALG, **(header or {})}
    if protected["alg"] != ALG:
        raise ValueError(f"this module signs only {ALG}")
    signing_input = f"{b64url_encode(_json_bytes(protected))}.{b64url_encode(payload)}"
    der = private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORD_LEN, "big") + s.to_bytes(_COORD_LEN, "big")
    return f"{signing_input}.{b64url_encode(raw)}"


def verify_compact(token: str, public_key: ec.EllipticCurvePublicKey) -> VerifiedJws:
    """Check an ES256 compact JWS; raises ``SignatureError`` for a malformed token, another alg or a bad
    signature."""
    _check_p256(public_key.curve)
    if not isinstance(token, str):
        raise SignatureError(f"malformed token: want str, got {type(token).__name__}")
    if len(token) > _MAX_TOKEN_LEN:
        raise SignatureError(f"malformed token: {len(token)} characters, limit {_MAX_TOKEN_LEN}")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError(f"malformed token: {len(parts)} parts, want 3")
    header_b64, payload_b64, sig_b64 = parts
    header = _json_object(_b64url_field(header_b64, "header"), "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise SignatureError("malformed token: header has no alg")
    if alg != ALG:
        raise SignatureError(f"alg {alg[:20]!r} refused, only {ALG} is accepted")
    if "crit" in header:
        raise SignatureError("unsupported critical header parameters (crit)")
    payload = _b64url_field(payload_b64, "payload")
    raw = _b64url_field(sig_b64, "signature")
    if len(raw) != _SIG_LEN:
        raise SignatureError(f"bad signature: {len(raw)} bytes, ES256 wants {_SIG_LEN}")
    der = encode_dss_signature(int.from_bytes(raw[:_COORD_LEN], "big"), int.from_bytes(raw[_COORD_LEN:], "big"))
    try:
        public_key.verify(der, f"{header_b64}.{payload_b64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("bad signature") from None
    return VerifiedJws(header=header, payload=payload)


# ----------------------------------------------------------------------------------- response signatures


def content_hash(body: bytes) -> str:
    """The ``content-hash`` claim for a body: standard base64 (with padding) of its SHA-256."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def sign_response(
    body: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    *,
    now: float,
    ttl: float,
    issuer: str = DEFAULT_ISSUER,
    extra_claims: Mapping[str, Any] | None = None,
    key_id: str | None = None,
) -> str:
    """The ``Signature`` header value for a response body, valid from ``now`` for ``ttl`` seconds.

    ``extra_claims`` carries protected response headers (e.g. ``{"key-bundle-tag": "1600000000000"}``)
    and must not redefine the reserved claims.
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    extra = dict(extra_claims or {})
    clash = RESERVED_CLAIMS.intersection(extra)
    if clash:
        raise ValueError(f"extra claims may not set {sorted(clash)}")
    claims: dict[str, Any] = {
        "content-hash": content_hash(body),
        "hash-alg": HASH_ALG,
        "iss": issuer,
        "iat": int(now),
        "exp": int(now + ttl),
        **extra,
    }
    return sign_compact(_json_bytes(claims), private_key, header=None if key_id is None else {"kid": key_id})


def verify_response(
    body: bytes,
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: float,
    issuer: str | None = None,
    leeway: float = 60.0,
) -> dict[str, Any]:
    """The claims of a valid ``Signature`` header for ``body``, or ``SignatureError`` saying why not.

    Refused: malformed token, alg other than ES256, bad signature, ``hash-alg`` other than sha-256,
    ``content-hash`` not matching the body, missing or past ``exp`` (``now`` > exp + leeway), ``iat`` or
    ``nbf`` after now + leeway, and, when ``issuer`` is given, another ``iss``.
    """
    return verify_response_digest(
        hashlib.sha256(body).digest(), token, public_key, now=now, issuer=issuer, leeway=leeway
    )


def verify_response_digest(
    body_sha256: bytes,
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: float,
    issuer: str | None = None,
    leeway: float = 60.0,
) -> dict[str, Any]:
    """``verify_response`` for a body known by its SHA-256 only: a list too large to hold in memory is
    hashed as it is read from disk, and the same checks and refusals apply to that digest."""
    claims = _json_object(verify_compact(token, public_key).payload, "payload")
    if claims.get("hash-alg") != HASH_ALG:
        raise SignatureError(f"unsupported hash-alg {str(claims.get('hash-alg'))[:20]!r}, want {HASH_ALG}")
    claimed = claims.get("content-hash")
    if not isinstance(claimed, str):
        raise SignatureError("malformed token: content-hash claim missing or not a string")
    try:
        claimed_digest = base64.b64decode(claimed, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed token: content-hash is not base64") from None
    if not hmac.compare_digest(claimed_digest, body_sha256):
        raise SignatureError("content-hash mismatch: the body is not the one that was signed")
    exp = _numeric_date(claims, "exp", required=True)
    if exp is not None and now > exp + leeway:
        raise SignatureError(f"expired at {int(exp)}, now is {int(now)}")
    for name in ("iat", "nbf"):
        value = _numeric_date(claims, name, required=False)
        if value is not None and value > now + leeway:
            raise SignatureError(f"{name} {int(value)} is in the future, now is {int(now)}")
    if issuer is not None and claims.get("iss") != issuer:
        raise SignatureError(f"issuer {str(claims.get('iss'))[:40]!r} is not {issuer!r}")
    return claims


# ------------------------------------------------------------------------------------------------ helpers


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of ``b64url_encode``: no padding, no stray characters, no non-canonical tail bits,
    so each byte string has exactly one accepted encoding. Raises ValueError otherwise."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def _b64url_field(text: str, what: str) -> bytes:
    try:
        return b64url_decode(text)
    except (ValueError, binascii.Error):
        raise SignatureError(f"malformed token: {what} is not base64url") from None


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key[:20]!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise SignatureError(f"malformed token: {what} is not JSON") from None
    if not isinstance(obj, dict):
        raise SignatureError(f"malformed token: {what} is not a JSON object")
    return obj


def _numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise SignatureError(f"malformed token: no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError(f"malformed token: {name} is not a number")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise SignatureError(f"malformed token: {name} is not a finite number")
    return seconds


def _check_p256(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise ValueError(f"ES256 needs a P-256 key, got {curve.name}")

"""The few primitives the schemes share, built so per-key cost stays low on a Pi.

Matching expands up to hundreds of thousands of published keys; in Python the cost is in creating objects
(an HKDF object, an HMAC object, a cipher), not in the AES work. So HKDF-SHA256 is done with hashlib: the
zero-salt HMAC pads are hashed once at import and copied per key, the expand pads are built with
``bytes.translate``; and AES goes through one cipher call per key, never one per ID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 64
_XOR_IPAD = bytes(b ^ 0x36 for b in range(256))
_XOR_OPAD = bytes(b ^ 0x5C for b in range(256))
_ZERO_SALT_INNER = hashlib.sha256(bytes(_BLOCK).translate(_XOR_IPAD))
_ZERO_SALT_OUTER = hashlib.sha256(bytes(_BLOCK).translate(_XOR_OPAD))
_HALF_BLOCK = bytes(32)
_ECB = modes.ECB()


def hkdf16(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(ikm, salt=None, info, 16): extract and expand in one call, for the per-key hot loop."""
    inner = _ZERO_SALT_INNER.copy()
    inner.update(ikm)
    outer = _ZERO_SALT_OUTER.copy()
    outer.update(inner.digest())
    key = outer.digest() + _HALF_BLOCK
    t1 = hashlib.sha256(key.translate(_XOR_IPAD) + info + b"\x01").digest()
    return hashlib.sha256(key.translate(_XOR_OPAD) + t1).digest()[:16]


def hkdf16_many(ikms: Iterable[bytes], info: bytes) -> list[bytes]:
    """``hkdf16`` over many keys: the same hashing, with every lookup hoisted out of the per-key loop."""
    inner_copy, outer_copy, sha256 = _ZERO_SALT_INNER.copy, _ZERO_SALT_OUTER.copy, hashlib.sha256
    ipad, opad, half, suffix = _XOR_IPAD, _XOR_OPAD, _HALF_BLOCK, info + b"\x01"
    out = []
    for ikm in ikms:
        inner = inner_copy()
        inner.update(ikm)
        outer = outer_copy()
        outer.update(inner.digest())
        key = outer.digest() + half
        t1 = sha256(key.translate(ipad) + suffix).digest()
        out.append(sha256(key.translate(opad) + t1).digest()[:16])
    return out


def hmac_sha256_many(keys: Iterable[bytes], msg: bytes) -> list[bytes]:
    """``hmac_sha256(key, msg)`` for many keys of 32 bytes (DP-3T day keys) under one message."""
    sha256, ipad, opad, half = hashlib.sha256, _XOR_IPAD, _XOR_OPAD, _HALF_BLOCK
    out = []
    for key in keys:
        if len(key) != 32:
            raise ValueError(f"hmac_sha256_many takes 32-byte keys, got {len(key)}")
        padded = key + half
        out.append(sha256(padded.translate(opad) + sha256(padded.translate(ipad) + msg).digest()).digest())
    return out


def sha256_many(values: Iterable[bytes]) -> list[bytes]:
    sha256 = hashlib.sha256
    return [sha256(v).digest() for v in values]


def hkdf_extract(ikm: bytes) -> bytes:
    """HKDF-Extract with salt=None, i.e. HMAC-SHA256 keyed with 32 zero bytes (RFC 5869 §2.2)."""
    inner = _ZERO_SALT_INNER.copy()
    inner.update(ikm)
    outer = _ZERO_SALT_OUTER.copy()
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 for keys of at most one block, without building an HMAC object."""
    if len(key) > _BLOCK:
        raise ValueError("keys longer than one SHA-256 block are not used here")
    padded = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(padded.translate(_XOR_IPAD) + msg).digest()
    return hashlib.sha256(padded.translate(_XOR_OPAD) + inner).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int = 16) -> bytes:
    """HKDF-Expand for outputs of one hash block: T(1) = HMAC(PRK, info ‖ 0x01)."""
    if length > 32:
        raise ValueError("only single-block HKDF outputs are needed here")
    return hmac_sha256(prk, info + b"\x01")[:length]


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-ECB over whole blocks (no padding, so no finalize output)."""
    return Cipher(algorithms.AES(key), _ECB).encryptor().update(data)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def aes_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-CTR encryption and decryption (the same operation), 128-bit big-endian counter."""
    enc = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return enc.update(data) + enc.finalize()


def check_len(name: str, value: bytes, *lengths: int) -> None:
    if len(value) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{name} must be {want} bytes, got {len(value)}")

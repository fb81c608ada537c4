"""The few primitives the schemes share, built so per-key cost stays low on a Pi.

Matching expands up to hundreds of thousands of published keys; in Python the cost is in creating objects
(an HKDF object, an HMAC object), not in the AES work. So HKDF with a zero salt is done as two one-shot
HMACs, and AES goes through one cipher call per key, never one per ID.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ZERO_SALT = bytes(32)


def hkdf_sha256_zero_salt(ikm: bytes, info: bytes, length: int = 16) -> bytes:
    """HKDF-SHA256 (RFC 5869) with salt=None, for outputs of at most one hash block."""
    return hkdf_expand(hkdf_extract(ikm), info, length)


def hkdf_extract(ikm: bytes) -> bytes:
    return hmac.digest(_ZERO_SALT, ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int = 16) -> bytes:
    if length > 32:
        raise ValueError("only single-block HKDF outputs are needed here")
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


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

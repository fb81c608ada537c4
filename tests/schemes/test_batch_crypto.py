"""The matcher's batched primitives equal the one-at-a-time ones, and the RFC 5869 vector."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os

import pytest

from agent.schemes import gaen
from agent.schemes._crypto import hkdf16, hkdf16_many, hmac_sha256_many, sha256_many
from agent.schemes._fastaes import Rekeyer


def test_hkdf16_many_matches_rfc5869_case_3_and_hkdf16() -> None:
    # RFC 5869 A.3: IKM = 22 x 0x0b, no salt, no info; OKM starts 8da4e775a563c18f715f802a063c5a31
    assert hkdf16_many([b"\x0b" * 22], b"") == [bytes.fromhex("8da4e775a563c18f715f802a063c5a31")]
    ikms = [os.urandom(16) for _ in range(300)]
    assert hkdf16_many(ikms, gaen.RPIK_INFO) == [hkdf16(k, gaen.RPIK_INFO) for k in ikms]


def test_hmac_and_sha256_many_match_the_standard_library() -> None:
    keys = [os.urandom(32) for _ in range(300)]
    assert hmac_sha256_many(keys, b"broadcast key") == [hmac.new(k, b"broadcast key", "sha256").digest() for k in keys]
    assert sha256_many(keys) == [hashlib.sha256(k).digest() for k in keys]
    with pytest.raises(ValueError, match="32-byte keys"):
        hmac_sha256_many([bytes(16)], b"x")


@pytest.mark.parametrize("mode", ["aes-128-ecb", "aes-256-ctr"])
def test_encrypt_many_writes_what_encrypt_into_writes_for_every_slot(mode: str) -> None:
    n, stride = 700, 96 * 16
    key_len = 16 if mode == "aes-128-ecb" else 32
    keys = [os.urandom(key_len) for _ in range(n)]
    data = [os.urandom(16 * (1 + i % 96)) for i in range(n)]
    outputs = []
    for native, slots in ((True, n), (False, n), (True, 1)):
        out = ctypes.create_string_buffer(n * stride)
        with Rekeyer(mode, native=native, slots=slots) as aes:  # type: ignore[arg-type]
            aes.encrypt_many(keys, data, out, stride)
            aes.encrypt_many(keys, data, out, stride)  # a second batch re-keys every slot again
        outputs.append(out.raw)
    reference = ctypes.create_string_buffer(n * stride)
    with Rekeyer(mode, native=False) as aes:  # type: ignore[arg-type]
        for i in range(n):
            aes.encrypt_into(keys[i], data[i], reference, i * stride)
    assert outputs == [reference.raw] * 3


def test_encrypt_many_gives_the_gaen_rpis() -> None:
    teks = [os.urandom(16) for _ in range(5)]
    out = ctypes.create_string_buffer(5 * 144 * 16)
    blocks = gaen.padded_rpi_blocks(2_642_976, 144)
    with Rekeyer("aes-128-ecb", slots=5) as aes:
        aes.encrypt_many(hkdf16_many(teks, gaen.RPIK_INFO), [blocks] * 5, out, 144 * 16)
    for i, tek in enumerate(teks):
        assert out.raw[i * 2304 : (i + 1) * 2304] == b"".join(gaen.rpis(gaen.rpik(tek), 2_642_976))


def test_encrypt_many_refuses_what_does_not_fit() -> None:
    out = ctypes.create_string_buffer(64)
    with Rekeyer("aes-128-ecb", slots=4) as aes:
        with pytest.raises(ValueError, match="too small"):
            aes.encrypt_many([bytes(16)] * 5, [bytes(16)] * 5, out, 16)
        with pytest.raises(ValueError, match="16-byte keys"):
            aes.encrypt_many([bytes(32)], [bytes(16)], out, 16)

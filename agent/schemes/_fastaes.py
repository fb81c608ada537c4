"""AES with one reusable OpenSSL context that is re-keyed per key, for matching's hot loop.

With OpenSSL 3 every new cipher object fetches the algorithm from a provider, which costs several
microseconds; the AES work for a day of IDs costs a fraction of one. The ``cryptography`` package has no way
to re-key a context, so when the system libcrypto is there we drive its EVP interface through ctypes the
way a C matcher would (init once, then EVP_EncryptInit_ex with only a new key per day). Where libcrypto
cannot be loaded, ``Rekeyer`` falls back to ``cryptography`` with identical output (tests check both).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from itertools import repeat
from typing import Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.schemes._libcrypto import libcrypto

Mode = Literal["aes-128-ecb", "aes-256-ctr"]


@functools.cache
def _libcrypto() -> ctypes.CDLL | None:
    lib = libcrypto()
    if lib is None:
        return None
    try:
        for fn in ("EVP_CIPHER_CTX_new", "EVP_aes_128_ecb", "EVP_aes_256_ctr"):
            getattr(lib, fn).restype = ctypes.c_void_p
    except AttributeError:
        return None
    return lib


class Rekeyer:
    """Encrypts ``data`` under a new key each call, writing into a caller-owned output buffer.

    With ``slots`` > 1 it holds that many contexts, so ``encrypt_many`` can key them all in one pass and
    encrypt in a second: two C-level loops (itertools.starmap over the ctypes functions) instead of a
    Python loop with a method call, checks and two foreign calls per key.
    """

    def __init__(self, mode: Mode, native: bool = True, slots: int = 1) -> None:
        self.mode = mode
        self.key_len = 16 if mode == "aes-128-ecb" else 32
        self._iv = bytes(16)
        self._outl = ctypes.c_int()
        self._outl_ref = ctypes.byref(self._outl)
        self._ctx: ctypes.c_void_p | None = None
        self._slots: list[ctypes.c_void_p] = []
        self._target_key: tuple[int, int] | None = None
        self._target_list: list[ctypes.c_void_p] = []
        self._target_buffer: ctypes.Array[ctypes.c_char] | None = None
        lib = _libcrypto() if native else None
        if lib is None:
            return
        # Fresh function objects without argtypes: every argument is passed pre-wrapped (c_void_p, bytes,
        # byref), which skips ctypes' per-call conversion — the point of this module.
        self._init = lib["EVP_EncryptInit_ex"]
        self._update = lib["EVP_EncryptUpdate"]
        self._free = lib["EVP_CIPHER_CTX_free"]
        cipher = lib.EVP_aes_128_ecb() if mode == "aes-128-ecb" else lib.EVP_aes_256_ctr()
        ctx = ctypes.c_void_p(lib.EVP_CIPHER_CTX_new())
        zero_key = bytes(self.key_len)
        if not ctx.value or self._init(ctx, ctypes.c_void_p(cipher), None, zero_key, self._iv) != 1:
            return
        set_padding = lib["EVP_CIPHER_CTX_set_padding"]
        set_padding(ctx, 0)
        self._ctx = ctx
        self._slots = [ctx]
        for _ in range(slots - 1):
            extra = ctypes.c_void_p(lib.EVP_CIPHER_CTX_new())
            self._slots.append(extra)  # freed by close() even if initialising it fails
            if not extra.value or self._init(extra, ctypes.c_void_p(cipher), None, zero_key, self._iv) != 1:
                raise RuntimeError("EVP_EncryptInit_ex failed")
            set_padding(extra, 0)

    @property
    def native(self) -> bool:
        return self._ctx is not None

    def encrypt_into(self, key: bytes, data: bytes, out: ctypes.Array[ctypes.c_char], offset: int) -> None:
        """out[offset:offset+len(data)] = AES(key, data); CTR starts from a zero counter block."""
        if len(key) != self.key_len:
            raise ValueError(f"{self.mode} needs a {self.key_len}-byte key, got {len(key)}")
        if offset < 0 or offset + len(data) > len(out):
            raise ValueError("output buffer too small")
        if self._ctx is not None:
            if self._init(self._ctx, None, None, key, self._iv) != 1:
                raise RuntimeError("EVP_EncryptInit_ex failed")
            if self._update(self._ctx, ctypes.byref(out, offset), self._outl_ref, data, len(data)) != 1:
                raise RuntimeError("EVP_EncryptUpdate failed")
            return
        mode = modes.ECB() if self.mode == "aes-128-ecb" else modes.CTR(bytes(16))
        ctypes.memmove(
            ctypes.addressof(out) + offset,
            Cipher(algorithms.AES(key), mode).encryptor().update(data),
            len(data),
        )

    def encrypt_many(
        self, keys: Sequence[bytes], data: Sequence[bytes], out: ctypes.Array[ctypes.c_char], stride: int
    ) -> None:
        """out[i*stride : i*stride+len(data[i])] = AES(keys[i], data[i]) for every i."""
        n = len(keys)
        if len(data) != n:
            raise ValueError("one data block per key")
        if not n:
            return
        if n * stride > len(out) or max(map(len, data)) > stride:
            raise ValueError("output buffer too small")
        if self._ctx is None or n > len(self._slots):
            for i in range(n):
                self.encrypt_into(keys[i], data[i], out, i * stride)
            return
        if set(map(len, keys)) != {self.key_len}:
            raise ValueError(f"{self.mode} needs {self.key_len}-byte keys")
        if not all(map(self._init, self._slots[:n], repeat(None, n), repeat(None, n), keys, repeat(self._iv, n))):
            raise RuntimeError("EVP_EncryptInit_ex failed")
        targets = self._targets(out, stride)
        if not all(map(self._update, self._slots[:n], targets, repeat(self._outl_ref, n), data, map(len, data))):
            raise RuntimeError("EVP_EncryptUpdate failed")

    def _targets(self, out: ctypes.Array[ctypes.c_char], stride: int) -> list[ctypes.c_void_p]:
        """Pointers to each slot's place in ``out``, made once per buffer (the matcher reuses one)."""
        base = ctypes.addressof(out)
        if self._target_key != (base, stride):
            count = min(len(self._slots), len(out) // stride)
            self._target_list = [ctypes.c_void_p(base + i * stride) for i in range(count)]
            self._target_key = (base, stride)
            self._target_buffer = out  # keeps the buffer, so its address cannot be reused while cached
        return self._target_list

    def close(self) -> None:
        for ctx in self._slots:
            self._free(ctx)
        self._slots = []
        self._ctx = None

    def __enter__(self) -> Rekeyer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

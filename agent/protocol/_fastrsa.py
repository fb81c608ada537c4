"""The raw RSA private operation (RSASP1, RFC 8017 §5.2.1) through OpenSSL's libcrypto, for blind signing.

Why: the ``cryptography`` package signs only padded messages, and a blind signature is RSASP1 on the bare
blinded message, so ``blind_rsa`` once did it with Python's ``pow`` (CRT, about ten times slower than
OpenSSL's signature on the same key: the backend's limit on tokens bought per second). OpenSSL's
``EVP_PKEY_decrypt`` with ``RSA_NO_PADDING`` *is* RSASP1, with OpenSSL's CRT, constant-time modular
exponentiation and base blinding. The key is parsed into an ``EVP_PKEY`` once per key object (from its
PKCS#1 DER); each call takes an ``EVP_PKEY_CTX`` of its own, so threads can sign at once (ctypes releases
the GIL around each call, so they really do). The ``EVP_PKEY`` is freed when its holder is collected.
Without libcrypto ``load`` answers ``None`` and ``blind_rsa`` keeps its pure path; it checks every result
either way.
"""

from __future__ import annotations

import ctypes
import weakref

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

EVP_PKEY_RSA = 6  # NID_rsaEncryption, the key type d2i_PrivateKey parses PKCS#1 DER as
RSA_NO_PADDING = 3  # openssl/rsa.h: the decrypt is then RSASP1 on the bare input


class NativeRsaKey:
    """One RSA private key held by libcrypto; ``rsasp1`` is safe to call from several threads at once."""

    def __init__(self, lib: ctypes.CDLL, pkey: int, modulus_len: int) -> None:
        self._k = modulus_len
        self._pkey = ctypes.c_void_p(pkey)
        free = lib["EVP_PKEY_free"]
        free.argtypes, free.restype = [ctypes.c_void_p], None
        self.freed = weakref.finalize(self, free, self._pkey)
        self._ctx_new = lib["EVP_PKEY_CTX_new"]
        self._ctx_new.argtypes, self._ctx_new.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_void_p
        self._ctx_free = lib["EVP_PKEY_CTX_free"]
        self._ctx_free.argtypes, self._ctx_free.restype = [ctypes.c_void_p], None
        self._init = lib["EVP_PKEY_decrypt_init"]
        self._init.argtypes, self._init.restype = [ctypes.c_void_p], ctypes.c_int
        self._padding = lib["EVP_PKEY_CTX_set_rsa_padding"]
        self._padding.argtypes, self._padding.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        self._decrypt = lib["EVP_PKEY_decrypt"]
        self._decrypt.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        self._decrypt.restype = ctypes.c_int
        self._clear_errors = lib["ERR_clear_error"]
        self._clear_errors.argtypes, self._clear_errors.restype = [], None

    @classmethod
    def load(cls, lib: ctypes.CDLL | None, sk: rsa.RSAPrivateKey) -> NativeRsaKey | None:
        """The key inside libcrypto, or ``None`` if there is no libcrypto or it will not take the key."""
        if lib is None:
            return None
        der = sk.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        d2i = lib["d2i_PrivateKey"]
        d2i.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_long]
        d2i.restype = ctypes.c_void_p
        buf = ctypes.create_string_buffer(der, len(der))
        cursor = ctypes.c_void_p(ctypes.addressof(buf))  # d2i moves it past what it parsed
        pkey = d2i(EVP_PKEY_RSA, None, ctypes.byref(cursor), len(der))
        ctypes.memset(buf, 0, len(der))  # our copy of the private key; the EVP_PKEY holds its own
        if not pkey:
            lib["ERR_clear_error"]()
            return None
        return cls(lib, pkey, (sk.key_size + 7) // 8)

    def rsasp1(self, m: bytes) -> bytes | None:
        """m^d mod n as ``modulus_len`` bytes, or ``None`` if OpenSSL refused (its error queue is cleared).

        The caller has checked that ``m`` is ``modulus_len`` bytes and below n, and checks the result."""
        out = ctypes.create_string_buffer(self._k)
        out_len = ctypes.c_size_t(self._k)
        ctx = self._ctx_new(self._pkey, None)
        if not ctx:
            self._clear_errors()
            return None
        try:
            ok = (
                self._init(ctx) == 1
                and self._padding(ctx, RSA_NO_PADDING) == 1
                and self._decrypt(ctx, out, ctypes.byref(out_len), m, len(m)) == 1
            )
        finally:
            self._ctx_free(ctx)
        if not ok or out_len.value > self._k:
            self._clear_errors()
            return None
        return bytes(self._k - out_len.value) + out.raw[: out_len.value]

"""The raw RSA operations (RSASP1 and RSAVP1, RFC 8017 §5.2) through OpenSSL's libcrypto, for blind signing.

Why: the ``cryptography`` package signs only padded messages, and a blind signature is RSASP1 on the bare
blinded message, so ``blind_rsa`` once did it with Python's ``pow`` (CRT, ten to twenty-five times slower
than OpenSSL's signature on the same key: the backend's limit on tokens bought per second). OpenSSL's
``EVP_PKEY_decrypt`` with ``RSA_NO_PADDING`` *is* RSASP1, with OpenSSL's CRT, constant-time modular
exponentiation and base blinding; ``EVP_PKEY_encrypt`` without padding is RSAVP1, the signer's fault
check, which in Python's ``pow`` cost half as much as the signature again. A key is parsed into an
``EVP_PKEY`` once (from DER), and freed when its holder is collected; each call takes an
``EVP_PKEY_CTX`` of its own, so threads can use one key at once (ctypes releases the GIL around each call,
so they really do). Without libcrypto the loaders answer ``None`` and ``blind_rsa`` keeps its pure path.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

EVP_PKEY_RSA = 6  # NID_rsaEncryption, the key type d2i_PrivateKey parses PKCS#1 DER as
RSA_NO_PADDING = 3  # openssl/rsa.h: decrypt is then RSASP1 and encrypt RSAVP1 on the bare input

Operation = Literal["decrypt", "encrypt"]


class NativeRsaKey:
    """One RSA key (private or public) held by libcrypto; safe to use from several threads at once."""

    def __init__(self, lib: ctypes.CDLL, pkey: int, modulus_len: int, private: bool) -> None:
        self.modulus_len = modulus_len
        self.private = private
        self._pkey = ctypes.c_void_p(pkey)
        free = lib["EVP_PKEY_free"]
        free.argtypes, free.restype = [ctypes.c_void_p], None
        self.freed = weakref.finalize(self, free, self._pkey)
        self._ctx_new = lib["EVP_PKEY_CTX_new"]
        self._ctx_new.argtypes, self._ctx_new.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_void_p
        self._ctx_free = lib["EVP_PKEY_CTX_free"]
        self._ctx_free.argtypes, self._ctx_free.restype = [ctypes.c_void_p], None
        op_types = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
        self._ops = {}
        for name in ("decrypt", "encrypt"):
            init, op = lib[f"EVP_PKEY_{name}_init"], lib[f"EVP_PKEY_{name}"]
            init.argtypes, init.restype = [ctypes.c_void_p], ctypes.c_int
            op.argtypes, op.restype = op_types, ctypes.c_int
            self._ops[name] = (init, op)
        self._padding = lib["EVP_PKEY_CTX_set_rsa_padding"]
        self._padding.argtypes, self._padding.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        self._clear_errors = lib["ERR_clear_error"]
        self._clear_errors.argtypes, self._clear_errors.restype = [], None

    @classmethod
    def load_private(cls, lib: ctypes.CDLL | None, sk: rsa.RSAPrivateKey) -> NativeRsaKey | None:
        """The private key inside libcrypto, or ``None`` without libcrypto or if it will not take the key."""
        if lib is None:
            return None
        der = sk.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        d2i = lib["d2i_PrivateKey"]
        d2i.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_long]
        d2i.restype = ctypes.c_void_p
        return cls._parse(lib, der, lambda cursor: d2i(EVP_PKEY_RSA, None, cursor, len(der)), sk.key_size, True)

    @classmethod
    def load_public(cls, lib: ctypes.CDLL | None, pk: rsa.RSAPublicKey) -> NativeRsaKey | None:
        """The public key inside libcrypto (parsed from its own DER, not taken from the private key's state,
        so a check with it is independent of that state), or ``None``."""
        if lib is None:
            return None
        der = pk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        d2i = lib["d2i_PUBKEY"]
        d2i.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_long]
        d2i.restype = ctypes.c_void_p
        return cls._parse(lib, der, lambda cursor: d2i(None, cursor, len(der)), pk.key_size, False)

    @classmethod
    def _parse(
        cls, lib: ctypes.CDLL, der: bytes, d2i: Callable[[Any], int | None], key_size: int, private: bool
    ) -> NativeRsaKey | None:
        buf = ctypes.create_string_buffer(der, len(der))
        cursor = ctypes.c_void_p(ctypes.addressof(buf))  # d2i moves it past what it parsed
        pkey = d2i(ctypes.byref(cursor))
        ctypes.memset(buf, 0, len(der))  # our copy of the key; the EVP_PKEY holds its own
        if not pkey:
            lib["ERR_clear_error"]()
            return None
        return cls(lib, pkey, (key_size + 7) // 8, private)

    def rsasp1(self, m: bytes) -> bytes | None:
        """m^d mod n as ``modulus_len`` bytes (a decrypt without padding), or ``None`` if OpenSSL refused.

        The caller has checked that ``m`` is ``modulus_len`` bytes and below n, and checks the result."""
        if not self.private:
            raise TypeError("RSASP1 needs the private key")
        return self._raw("decrypt", m)

    def rsavp1(self, s: bytes) -> bytes | None:
        """s^e mod n as ``modulus_len`` bytes (an encrypt without padding), or ``None`` if OpenSSL refused."""
        return self._raw("encrypt", s)

    def _raw(self, name: Operation, data: bytes) -> bytes | None:
        """One unpadded operation on a context of its own (freed before returning); on a refusal this
        thread's OpenSSL error queue is cleared, so no error lingers for the next call to read."""
        init, op = self._ops[name]
        out = ctypes.create_string_buffer(self.modulus_len)
        out_len = ctypes.c_size_t(self.modulus_len)
        ctx = self._ctx_new(self._pkey, None)
        if not ctx:
            self._clear_errors()
            return None
        try:
            ok = (
                init(ctx) == 1
                and self._padding(ctx, RSA_NO_PADDING) == 1
                and op(ctx, out, ctypes.byref(out_len), data, len(data)) == 1
            )
        finally:
            self._ctx_free(ctx)
        if not ok or out_len.value > self.modulus_len:
            self._clear_errors()
            return None
        return bytes(self.modulus_len - out_len.value) + out.raw[: out_len.value]

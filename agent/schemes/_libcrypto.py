"""Finding the system's OpenSSL libcrypto, the one home for it (AES re-keying, RSA blind signing).

Why a loader of our own: the ``cryptography`` package lacks two operations the hot paths need (re-keying
one cipher context, a raw RSA private operation), and the system libcrypto has both. Only OpenSSL 3 is
accepted, because the callers use its EVP interface (3.0 made ``EVP_PKEY_CTX_set_rsa_padding`` a real
function, not a macro). ``None`` means "not available": every caller has a pure fallback with the same
output. Callers take fresh function objects (``lib["name"]``) and set their own types, so no caller's
settings leak into another's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

OPENSSL_3 = 0x30000000  # OpenSSL_version_num() of 3.0.0: the EVP interface the callers are written against


@functools.cache
def libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        version = lib["OpenSSL_version_num"]
        version.restype = ctypes.c_ulong
        if version() < OPENSSL_3:
            return None
    except (OSError, AttributeError):
        return None
    return lib

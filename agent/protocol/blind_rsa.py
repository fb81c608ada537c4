"""RSA blind signatures, RFC 9474 variant RSABSSA-SHA384-PSS-Randomized, on ``cryptography``'s RSA keys.

Why: a TAN buys the reporting device a batch of submission tokens that the backend signs *blind*, so
when each token is later spent on one contact the backend can check it is genuine but cannot tell which
TAN it came from, nor which other tokens came with it. That is what lets a report travel as separate,
unlinkable submissions (ITU-T X.1152 Suppl. 38: elements "sent separately to prevent the server from
linking them").

The library has no blind-signing API, so the RFC's four steps are written here from its text: the
modular arithmetic uses the key's public numbers, the signer's exponent its private numbers (or, through
``BlindSigner``, OpenSSL's raw private operation on the key); EMSA-PSS
(RFC 8017 §9.1) with SHA-384, MGF1-SHA384 and a 48-byte salt is encoded and verified here too, because
the blinded message must be the *encoded* message. Every check the RFC names is made: the encoded
message is co-prime with n, the blind has an inverse, the signer refuses a blinded message outside
[0, n) and checks its own result, Finalize verifies the signature before returning it. Randomness (the
message prefix, the salt, the blind) comes from ``secrets``; the ``*_with`` variants take it as
arguments only so the RFC's test vectors can be replayed byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from agent.protocol import _fastrsa
from agent.schemes._libcrypto import libcrypto

log = logging.getLogger(__name__)

VARIANT = "RSABSSA-SHA384-PSS-Randomized"
HASH_LEN = 48  # SHA-384
SALT_LEN = 48  # the variant's salt length (sLen = hLen)
PREFIX_LEN = 32  # PrepareRandomize's random prefix


class BlindSignatureError(ValueError):
    """One of the RFC's named errors ("invalid input", "signing failure", "invalid signature", …)."""


class _BlindingError(BlindSignatureError):
    """The blind had no inverse mod n (then n is factored; the RFC says retry)."""


@dataclass(frozen=True)
class Blinded:
    """What Blind returns: the bytes to send to the signer and the inverse kept to unblind."""

    blinded_msg: bytes
    inv: int


def modulus_len(pk: rsa.RSAPublicKey) -> int:
    return (pk.key_size + 7) // 8


def _i2osp(x: int, length: int) -> bytes:
    return x.to_bytes(length, "big")


def _os2ip(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _mgf1(seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha384(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def _m_prime(msg: bytes, salt: bytes) -> bytes:
    return b"\x00" * 8 + hashlib.sha384(msg).digest() + salt


def emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """RFC 8017 §9.1.1 with SHA-384 and MGF1-SHA384."""
    em_len = (em_bits + 7) // 8
    if em_len < HASH_LEN + len(salt) + 2:
        raise BlindSignatureError("encoding error")
    h = hashlib.sha384(_m_prime(msg, salt)).digest()
    db = b"\x00" * (em_len - len(salt) - HASH_LEN - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1(h, em_len - HASH_LEN - 1), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


def emsa_pss_verify(msg: bytes, em: bytes, em_bits: int) -> bool:
    """RFC 8017 §9.1.2 with SHA-384, MGF1-SHA384 and sLen = 48."""
    em_len = (em_bits + 7) // 8
    if len(em) != em_len or em_len < HASH_LEN + SALT_LEN + 2 or em[-1] != 0xBC:
        return False
    masked, h = em[: em_len - HASH_LEN - 1], em[em_len - HASH_LEN - 1 : -1]
    top_mask = 0xFF >> (8 * em_len - em_bits)
    if masked[0] & ~top_mask & 0xFF:
        return False
    db = bytearray(a ^ b for a, b in zip(masked, _mgf1(h, len(masked)), strict=True))
    db[0] &= top_mask
    pad_len = em_len - HASH_LEN - SALT_LEN - 2
    if any(db[:pad_len]) or db[pad_len] != 0x01:
        return False
    salt = bytes(db[-SALT_LEN:])
    return hmac.compare_digest(h, hashlib.sha384(_m_prime(msg, salt)).digest())


def prepare(msg: bytes) -> bytes:
    """PrepareRandomize: a fresh 32-byte prefix, then the message."""
    return prepare_with(msg, secrets.token_bytes(PREFIX_LEN))


def prepare_with(msg: bytes, prefix: bytes) -> bytes:
    if len(prefix) != PREFIX_LEN:
        raise BlindSignatureError(f"message prefix must be {PREFIX_LEN} bytes")
    return prefix + msg


def _random_blind(n: int) -> int:
    """Uniform in [1, n) by rejection sampling (``secrets.randbelow`` is uniform)."""
    return 1 + secrets.randbelow(n - 1)


def blind(pk: rsa.RSAPublicKey, input_msg: bytes) -> Blinded:
    """Blind, retrying the negligible "blinding error" with a fresh blind as the RFC advises."""
    n = pk.public_numbers().n
    while True:
        try:
            return blind_with(pk, input_msg, secrets.token_bytes(SALT_LEN), _random_blind(n))
        except _BlindingError:
            continue


def blind_with(pk: rsa.RSAPublicKey, input_msg: bytes, salt: bytes, r: int) -> Blinded:
    """Blind with a given salt and blind (test vectors); ``blind`` draws both."""
    numbers = pk.public_numbers()
    n, e = numbers.n, numbers.e
    if len(salt) != SALT_LEN:
        raise BlindSignatureError(f"salt must be {SALT_LEN} bytes")
    if not 1 <= r < n:
        raise BlindSignatureError("invalid input: blind outside [1, n)")
    m = _os2ip(emsa_pss_encode(input_msg, pk.key_size - 1, salt))
    if math.gcd(m, n) != 1:
        raise BlindSignatureError("invalid input: encoded message not co-prime with n")
    try:
        inv = pow(r, -1, n)
    except ValueError:
        raise _BlindingError("blinding error") from None
    z = (m * pow(r, e, n)) % n
    return Blinded(_i2osp(z, modulus_len(pk)), inv)


class BlindSigner:
    """BlindSign for one private key, with what each signature needs made once per key, not per call.

    RSASP1 goes through libcrypto (``_fastrsa``; 15 to 25 times faster, tests/bench/bench_blind_sign.py)
    when it can be loaded and takes the key; otherwise through Python's ``pow`` in CRT form (RFC 8017
    §5.1.2 2.b), with identical output. Either way the RFC's checks hold: the input is the modulus'
    length, its representative is in [0, n), and the signer verifies its own result (s^e mod n == m)
    against fault attacks before returning it. On the libcrypto path that check is libcrypto's public
    operation under the public key parsed on its own, because Python's ``pow``, even with e = 65537,
    cost half as much again as the signature itself. Safe to share between threads; a server builds one
    per key and keeps it.
    """

    def __init__(self, sk: rsa.RSAPrivateKey, native: bool = True) -> None:
        self.key = sk
        public = sk.public_key().public_numbers()
        self._n, self._e = public.n, public.e
        self._k = modulus_len(sk.public_key())
        lib = libcrypto() if native else None
        self._native_sk = _fastrsa.NativeRsaKey.load_private(lib, sk)
        self._native_pk = _fastrsa.NativeRsaKey.load_public(lib, sk.public_key())
        if self._native_pk is None or not self._native_probe_ok():
            self._native_sk = None
        self._crt: tuple[int, int, int, int, int] | None = None
        if self._native_sk is None:
            numbers = sk.private_numbers()
            self._crt = (numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
        log.debug("blind signing %d-bit RSA through %s", sk.key_size, "libcrypto" if self.native else "pure Python")

    @property
    def native(self) -> bool:
        return self._native_sk is not None

    def _native_probe_ok(self) -> bool:
        """One RSASP1 through libcrypto, checked with Python's ``pow``: a libcrypto that takes the key but
        answers wrongly would otherwise fail every signature ("signing failure"), so it is not used."""
        assert self._native_sk is not None
        probe = 2  # below any modulus, and its signature is not a value anyone asked for
        sig = self._native_sk.rsasp1(_i2osp(probe, self._k))
        if sig is not None and pow(_os2ip(sig), self._e, self._n) == probe:
            return True
        log.warning("libcrypto's RSA private operation failed its probe: blind signing stays in pure Python")
        return False

    def sign(self, blinded_msg: bytes) -> bytes:
        if len(blinded_msg) != self._k:
            raise BlindSignatureError("unexpected input size")
        m = _os2ip(blinded_msg)
        if not 0 <= m < self._n:
            raise BlindSignatureError("message representative out of range")
        if self._native_sk is not None and self._native_pk is not None:
            sig = self._native_sk.rsasp1(blinded_msg)
            if sig is None or not hmac.compare_digest(self._native_pk.rsavp1(sig) or b"", blinded_msg):
                raise BlindSignatureError("signing failure")
            return sig
        assert self._crt is not None
        p, q, dmp1, dmq1, iqmp = self._crt
        s1, s2 = pow(m, dmp1, p), pow(m, dmq1, q)
        s = s2 + q * ((iqmp * (s1 - s2)) % p)
        if pow(s, self._e, self._n) != m:
            raise BlindSignatureError("signing failure")
        return _i2osp(s, self._k)


def blind_sign(sk: rsa.RSAPrivateKey, blinded_msg: bytes) -> bytes:
    """BlindSign with a signer made for this one call; whoever signs more than once keeps a ``BlindSigner``."""
    return BlindSigner(sk).sign(blinded_msg)


def finalize(pk: rsa.RSAPublicKey, input_msg: bytes, blind_sig: bytes, inv: int) -> bytes:
    """Finalize: unblind, then verify before returning (a wrong answer from the signer is refused)."""
    k = modulus_len(pk)
    if len(blind_sig) != k:
        raise BlindSignatureError("unexpected input size")
    n = pk.public_numbers().n
    z = _os2ip(blind_sig)
    if not 0 <= z < n:
        raise BlindSignatureError("invalid signature")
    sig = _i2osp((z * inv) % n, k)
    if not verify(pk, input_msg, sig):
        raise BlindSignatureError("invalid signature")
    return sig


def verify(pk: rsa.RSAPublicKey, input_msg: bytes, sig: bytes) -> bool:
    """RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) over the prepared message."""
    numbers = pk.public_numbers()
    n, e = numbers.n, numbers.e
    k = modulus_len(pk)
    if len(sig) != k:
        return False
    s = _os2ip(sig)
    if not 0 <= s < n:
        return False
    em_bits = pk.key_size - 1
    em = _i2osp(pow(s, e, n), k)
    em_len = (em_bits + 7) // 8
    if any(em[: k - em_len]):
        return False
    return emsa_pss_verify(input_msg, em[k - em_len :], em_bits)

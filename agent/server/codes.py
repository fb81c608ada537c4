"""One-time codes people type or read out: TANs from the health authority, enrolment codes from the
operator, and the random secrets behind tokens.

Codes are 12 Crockford base32 characters (60 bits), shown as ``XXXX-XXXX-XXXX``; typing is forgiving
(case, spaces, dashes, O for 0, I/L for 1). The server stores only their SHA-256, so a copy of its
database does not hand out usable TANs.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Callable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 12
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Stored expiries are rounded up to a boundary many share (issue 13): an exact expiry minus its lifetime is
# the moment of issue, which the audit log, another table's expiry or the officer's memory would match.
# A TAN's to the hour (the portal lists issued TANs to the hour anyway, so nothing more is told); an upload
# or access token's to the UTC day, as enrolment codes' are, since a token is taken at the moment a person
# reports or polls, and an hour of a small pilot holds few of those.
TAN_EXPIRY_BUCKET_SECONDS = 3600
TOKEN_EXPIRY_BUCKET_SECONDS = 86_400


def new_code(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    value = int.from_bytes(random_bytes(8), "big") >> 4  # 60 bits
    chars = "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))
    return "-".join(chars[i : i + 4] for i in range(0, CODE_CHARS, 4))


def normalise_code(text: str) -> str | None:
    """The canonical 12 characters, or None when ``text`` cannot be a code."""
    cleaned = text.upper().replace("-", "").replace(" ", "").translate(_CONFUSABLE)
    if len(cleaned) != CODE_CHARS or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def code_hash(code: str) -> bytes:
    """The stored form of a (normalised) code or token."""
    return hashlib.sha256(code.encode("ascii")).digest()


def new_token() -> str:
    """A bearer token or client secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def rounded_expiry(t: float, bucket_seconds: int) -> float:
    """``t`` rounded up to a multiple of ``bucket_seconds`` (one already on a boundary stays): a secret
    lives at least as long as asked, and its stored expiry names only its bucket."""
    return float(math.ceil(t / bucket_seconds) * bucket_seconds)

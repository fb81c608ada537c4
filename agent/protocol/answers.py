"""Signed answers: how the backend vouches for every answer a device acts on, and how that is bound.

The lists were always signed; the other answers (server info, the upload token a TAN buys, challenges,
registrations, access tokens, EBID batches, risk verdicts, the submission key, the blind signatures a TAN
buys, a submission's receipt) were not, so a machine in the middle could hand a device foreign EBIDs (or
its own submission key, whose signatures it could then tie to one report) or answer "register again" and
wipe its credentials. Every such answer now carries the same ``Signature`` header as the lists
(``agent.protocol.jws.sign_response``: ES256 with the key the device pins, ``content-hash`` of the exact
body, ``iat``/``exp`` with the lists' own lifetime, ``signing.response_ttl_seconds``: the nonce, not the
expiry, is what stops a replay, so one lifetime for every signed response is enough), plus two claims that
tie it to the one request it answers:

- ``nonce``: 16 random bytes (base64url) the device sent in the ``X-Request-Nonce`` header. No other
  request, of this device or another, carries the same nonce, so an answer replayed to another device or
  for another request of the same device is refused.
- ``request``: the method and path (``POST /v1/ebid/status``), so an answer to one endpoint cannot stand
  in for another's even if a nonce were reused.

Why a header and not a compact JWS body: the body stays the wire body both sides already parse, one
verifier (``jws.verify_response``) serves lists and answers, and the hash covers the exact bytes parsed.
"""

from __future__ import annotations

import re
import secrets

NONCE_HEADER = "X-Request-Nonce"
NONCE_BYTES = 16
CLOCK_TOLERANCE_SECONDS = 300
"""How far the device clock may be off the backend's before ``iat``/``exp`` refuse an answer: a Raspberry
Pi has no real-time clock and may run a few minutes off until NTP catches up; five minutes (Kerberos'
default skew) accepts that and still refuses an answer kept for later use."""
SIGNED_ANSWER_PATHS = frozenset(
    {
        "/v1/health",
        "/v1/onset",
        "/v1/ebid/challenge",
        "/v1/ebid/register",
        "/v1/ebid/token",
        "/v1/ebid/ebids",
        "/v1/ebid/status",
        "/v1/ebid/submission-key",
        "/v1/ebid/reregistration-key",
        "/v1/ebid/submission-tokens",
        "/v1/ebid/submissions",
    }
)
_NONCE = re.compile(r"[A-Za-z0-9_-]{22}")


def new_nonce() -> str:
    """A fresh request nonce (base64url of ``NONCE_BYTES`` random bytes, 22 characters)."""
    return secrets.token_urlsafe(NONCE_BYTES)


def valid_nonce(text: str) -> bool:
    return _NONCE.fullmatch(text) is not None


def request_claim(method: str, path: str) -> str:
    """The ``request`` claim: method and path without the query."""
    return f"{method.upper()} {path.split('?', 1)[0]}"


def answer_claims(method: str, path: str, nonce: str) -> dict[str, str]:
    return {"nonce": nonce, "request": request_claim(method, path)}

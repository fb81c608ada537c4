"""Officer sessions: a random token in a signed, ``Secure``, ``HttpOnly``, ``SameSite=Strict`` cookie.

The cookie is ``token.signature``; the signature (HMAC-SHA256 under a key kept in the backend's store)
turns away forged or tampered cookies before the database is asked, and the database holds only the
token's SHA-256, so a copy of it opens no session. Ending a session (logout, disable, reset) deletes its
row: a signed cookie alone is never enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from agent.server import codes
from agent.server.portal.store import Officer, PortalStore

SESSION_COOKIE = "pt_session"
LOGIN_COOKIE = "pt_login"  # before login: what the login form's CSRF token is bound to
COOKIE_KEY_META = "portal_cookie_key"


@dataclass(frozen=True)
class CookieSettings:
    max_age: int
    secure: bool

    def attributes(self) -> dict[str, object]:
        """aiohttp ``set_cookie`` keywords."""
        return {
            "max_age": self.max_age,
            "path": "/",
            "secure": self.secure,
            "httponly": True,
            "samesite": "Strict",
        }


def _mac(key: bytes, purpose: bytes, value: str) -> str:
    digest = hmac.new(key, purpose + b"\0" + value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: bytes, token: str) -> str:
    return f"{token}.{_mac(key, b'cookie', token)}"


def unsign(key: bytes, cookie: str | None) -> str | None:
    """The token of a cookie signed with ``key``, or None for a missing, forged or tampered one."""
    if not cookie or len(cookie) > 200:
        return None
    token, _, signature = cookie.rpartition(".")
    if not token or not hmac.compare_digest(signature, _mac(key, b"cookie", token)):
        return None
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Sessions:
    def __init__(self, store: PortalStore, key: bytes, seconds: int) -> None:
        self._store = store
        self._key = key
        self._seconds = seconds

    def start(self, officer: Officer, now: float) -> str:
        """A new session for ``officer``; the signed cookie value."""
        self._store.drop_stale_sessions(now)
        token = new_token()
        self._store.add_session(codes.code_hash(token), officer.id, now + self._seconds)
        return sign(self._key, token)

    def officer(self, cookie: str | None, now: float) -> Officer | None:
        token = unsign(self._key, cookie)
        if token is None:
            return None
        officer_id = self._store.session_officer(codes.code_hash(token), now)
        officer = None if officer_id is None else self._store.officer_by_id(officer_id)
        return None if officer is None or officer.disabled else officer

    def end(self, cookie: str | None) -> None:
        token = unsign(self._key, cookie)
        if token is not None:
            self._store.end_session(codes.code_hash(token))

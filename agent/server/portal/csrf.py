"""CSRF tokens: every form carries one derived from the cookie that identifies the browser (the session
cookie once logged in, a signed pre-login cookie before), checked on every POST.

A cross-site page can make a browser send its cookies (``SameSite=Strict`` already stops that in current
browsers) but cannot read them, so it cannot compute the token: an HMAC of the cookie's token under the
portal's key. No server-side state: the token is valid exactly as long as the cookie it is bound to.
"""

from __future__ import annotations

import hashlib
import hmac

FIELD = "csrf"


def token_for(key: bytes, cookie_token: str) -> str:
    return hmac.new(key, b"csrf\0" + cookie_token.encode(), hashlib.sha256).hexdigest()


def valid(key: bytes, cookie_token: str | None, given: str | None) -> bool:
    if not cookie_token or not given:
        return False
    return hmac.compare_digest(token_for(key, cookie_token), given)

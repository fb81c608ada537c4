"""TANs, upload tokens and key uploads (the decentralized models' write side).

A health authority hands a diagnosed person a TAN; the device trades it for a short-lived upload token
(so the TAN itself never travels with keys) and uploads its keys with that token, padded with fake keys
to a fixed count. The server drops the fakes, refuses keys for the future or beyond retention, stamps
each key with the release bucket that will publish it (never before its day is over), and only then
spends the token: a rejected upload leaves the token usable and the store unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

from agent.clock import Clock
from agent.protocol import wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType
from agent.server import buckets, codes
from agent.server.config import BackendConfig
from agent.server.db import RedeemedTan, ServerStore, Spent, UploadToken
from agent.server.errors import ApiError
from agent.server.ratelimit import FailureLimiter

log = logging.getLogger(__name__)
MAX_DAYS_SINCE_ONSET = 14
WRONG_TANS = "wrong TANs from this address"
_FAKE_RANDOM_LEN = 16


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires: float


@dataclass(frozen=True)
class BearerUpload:
    """A checked (not yet spent) upload token."""

    token_hash: bytes
    token: UploadToken


def issue_tans(
    store: ServerStore,
    now: float,
    valid_seconds: int,
    onset_day: int | None,
    count: int = 1,
    report_type: ReportType = ReportType.CONFIRMED_TEST,
) -> list[IssuedCode]:
    """New TANs (shared by the portal, the admin endpoint and ``proxitrace backend tan issue``), each
    carrying the officer's onset day and report type to the device that spends it."""
    if valid_seconds <= 0:
        raise ApiError(400, "validity must be positive")
    expires = codes.rounded_expiry(now + valid_seconds, codes.TAN_EXPIRY_BUCKET_SECONDS)
    issued = [IssuedCode(codes.new_code(), expires) for _ in range(count)]
    for tan in issued:
        store.add_tan(codes.code_hash(codes.normalise_code(tan.code) or ""), tan.expires, onset_day, int(report_type))
    store.count("tans_issued", now, count)
    log.info("%d TAN(s) issued, valid %d s", count, valid_seconds)
    return issued


class Uploads:
    def __init__(
        self, config: BackendConfig, clock: Clock, store: ServerStore, limiter: FailureLimiter, fake_key: bytes
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._limiter = limiter
        self._fake_key = fake_key

    def issue_tan(self, valid_seconds: int | None = None, onset_day: int | None = None) -> IssuedCode:
        valid = self._config.tan.valid_seconds if valid_seconds is None else valid_seconds
        return issue_tans(self._store, self._clock.now(), valid, onset_day)[0]

    def exchange(self, body: object, address: str) -> wire.UploadToken:
        """TAN → upload token, with the TAN's onset day and report type. ``{"tan": …}``; ``{"fake": true}``
        gets a token that uploads nothing (dummy traffic that looks like a real report from the outside)."""
        now = self._clock.now()
        expires = codes.rounded_expiry(now + self._config.upload.token_ttl_seconds, codes.TOKEN_EXPIRY_BUCKET_SECONDS)
        if wire.optional_bool(body, "fake"):
            return wire.UploadToken(self._fake_token(), expires)
        token = codes.new_token()
        tan = wire.required_str(body, "tan", 64)
        with self._limiter.attempt(address, WRONG_TANS) as guess:
            normal = codes.normalise_code(tan)
            redeemed: RedeemedTan | Spent = Spent.UNKNOWN
            if normal is not None:
                redeemed = self._store.redeem_tan(codes.code_hash(normal), now, codes.code_hash(token), expires)
            if isinstance(redeemed, Spent):
                guess.wrong()
                log.info("TAN refused: %s", redeemed.value)
                raise ApiError(403, f"TAN {redeemed.value}")
        return wire.UploadToken(token, expires, tan_grant(redeemed))

    def check_tan(self, body: object, address: str) -> wire.TanGrant:
        """What a TAN carries, without spending it (``wire.TAN_CHECK_PATH``). A wrong TAN counts as a failure
        against the address, as at the exchange, so checking is no cheaper way to guess; ``{"fake": true}``
        (dummy traffic) is answered as a TAN without onset."""
        if wire.optional_bool(body, "fake"):
            return wire.TanGrant()
        tan = wire.required_str(body, "tan", 64)
        with self._limiter.attempt(address, WRONG_TANS) as guess:
            normal = codes.normalise_code(tan)
            now = self._clock.now()
            found = Spent.UNKNOWN if normal is None else self._store.peek_tan(codes.code_hash(normal), now)
            if isinstance(found, Spent):
                guess.wrong()
                raise ApiError(403, f"TAN {found.value}")
        return tan_grant(found)

    def _fake_token(self, random_part: bytes | None = None) -> str:
        """A fake upload token that needs no row: 16 random bytes and their MAC under the backend's own
        key, 32 bytes base64url like a real token's, so anyone may ask for fakes without growing the store."""
        r = os.urandom(_FAKE_RANDOM_LEN) if random_part is None else random_part
        mac = hmac.new(self._fake_key, r, hashlib.sha256).digest()[:_FAKE_RANDOM_LEN]
        return base64.urlsafe_b64encode(r + mac).rstrip(b"=").decode("ascii")

    def _is_fake(self, token: str) -> bool:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return False
        if len(raw) != 2 * _FAKE_RANDOM_LEN:
            return False
        return hmac.compare_digest(self._fake_token(raw[:_FAKE_RANDOM_LEN]), token)

    def bearer(self, authorization: str | None) -> BearerUpload:
        token = bearer_token(authorization)
        token_hash = codes.code_hash(token)
        found = self._store.upload_token(token_hash, self._clock.now())
        if found is Spent.UNKNOWN and self._is_fake(token):
            return BearerUpload(token_hash, UploadToken(None, fake=True))
        if isinstance(found, Spent):
            raise ApiError(401, f"upload token {found.value}", {"WWW-Authenticate": "Bearer"})
        return BearerUpload(token_hash, found)

    def upload_keys(self, scheme: SchemeName, bearer: BearerUpload, body: object) -> int:
        """Check and store an upload; the number of real keys stored (never returned to the client)."""
        upload = wire.parse_key_upload(body, scheme, self._config.upload.keys_per_upload)
        now = self._clock.now()
        if bearer.token.fake:
            return 0
        onset = bearer.token.onset_day if bearer.token.onset_day is not None else upload.onset_day
        checked = [self._checked(k, now, onset, bearer.token.report_type) for k in upload.keys]
        bucket = self._config.lists.bucket_seconds
        keys = [(k, buckets.release_tag_ms(scheme, k, now, bucket)) for k in checked]
        if not self._store.publish_keys(bearer.token_hash, now, scheme, keys):
            raise ApiError(401, "upload token already used", {"WWW-Authenticate": "Bearer"})
        log.info("%s upload stored", scheme.value)
        return len(keys)

    def _checked(self, key: PublishedKey, now: float, onset_day: int | None, report_type: int) -> PublishedKey:
        current = gaen.enin(now)
        oldest = gaen.day_start_enin(current) - self._config.lists.retention_days * gaen.ROLLING_PERIOD
        if key.rolling_start_interval_number > current:
            raise ApiError(400, "body.keys: a key for the future (its first interval has not begun)")
        if key.rolling_start_interval_number + key.rolling_period <= oldest:
            raise ApiError(400, f"body.keys: a key older than the {self._config.lists.retention_days}-day retention")
        dso = None
        if onset_day is not None:
            dso = key.rolling_start_interval_number // gaen.ROLLING_PERIOD - onset_day
            dso = max(-MAX_DAYS_SINCE_ONSET, min(MAX_DAYS_SINCE_ONSET, dso))
        return PublishedKey(
            key.key_data,
            key.rolling_start_interval_number,
            key.rolling_period,
            key.transmission_risk_level,
            report_type,
            dso,
        )


def tan_grant(redeemed: RedeemedTan) -> wire.TanGrant:
    """What a spent TAN tells the device (its stored report type is one the portal or CLI issued)."""
    return wire.TanGrant(redeemed.onset_day, ReportType(redeemed.report_type))


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header, or a 401."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 256:
        raise ApiError(401, "missing bearer token (Authorization: Bearer …)", {"WWW-Authenticate": "Bearer"})
    return token.strip()

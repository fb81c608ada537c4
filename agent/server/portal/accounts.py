"""Officer accounts: Argon2id password hashes, an optional RFC 6238 second factor, lockout after failures.

The rule (``judge``) is pure: given the stored account, the time and whether the password and code were
right, it says whether the login succeeds and what the account's failure count and lock become. A locked
or disabled account is refused before its password is even looked at, so a correct guess during a lock
teaches an attacker nothing.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from agent.server import codes
from agent.server.portal.store import Officer, PortalStore

TOTP_STEP_SECONDS = 30  # RFC 6238's default time step X
MAX_NAME_CHARS = 64
API_TOKEN_PREFIX = "pto_"


class AccountError(ValueError):
    """A refused account change, with a one-line reason."""


class Verdict(StrEnum):
    OK = "ok"
    WRONG = "wrong password or code"
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    lockout_seconds: float


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    failures: int
    locked_until: float


@dataclass(frozen=True)
class Credentials:
    """What an operator hands an officer once: the password and, with a second factor, its secret."""

    name: str
    password: str
    totp_secret: str | None

    @property
    def totp_uri(self) -> str | None:
        if self.totp_secret is None:
            return None
        return pyotp.TOTP(self.totp_secret).provisioning_uri(name=self.name, issuer_name="Proxitrace portal")


def judge(officer: Officer, now: float, password_ok: bool, totp_ok: bool, policy: LoginPolicy) -> Judgement:
    if officer.disabled:
        return Judgement(Verdict.DISABLED, officer.failures, officer.locked_until)
    if officer.locked_until > now:
        return Judgement(Verdict.LOCKED, officer.failures, officer.locked_until)
    if password_ok and totp_ok:
        return Judgement(Verdict.OK, 0, 0.0)
    failures = officer.failures + 1
    if failures >= policy.max_failures:
        return Judgement(Verdict.WRONG, 0, now + policy.lockout_seconds)
    return Judgement(Verdict.WRONG, failures, officer.locked_until)


def check_name(name: str) -> str:
    """The name as stored; any printable text (it is escaped wherever it is shown), no control characters."""
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME_CHARS:
        raise AccountError(f"officer name: 1-{MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise AccountError("officer name: no control characters")
    return cleaned


def hasher() -> PasswordHasher:
    """Argon2id with the library's defaults (RFC 9106's low-memory profile)."""
    return PasswordHasher()


def password_matches(stored: str, password: str) -> bool:
    try:
        return hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def totp_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code ``code`` is (this one or one either side, for clock drift), or None."""
    code = code.strip().replace(" ", "")
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // TOTP_STEP_SECONDS)
    for candidate in (step, step - 1, step + 1):
        if secrets.compare_digest(totp.at(candidate * TOTP_STEP_SECONDS), code):
            return candidate
    return None


class Accounts:
    """Account changes and logins over the portal store."""

    def __init__(self, store: PortalStore, policy: LoginPolicy) -> None:
        self._store = store
        self.policy = policy

    def add(self, name: str, totp: bool, now: float) -> Credentials:
        name = check_name(name)
        creds = Credentials(name, secrets.token_urlsafe(12), pyotp.random_base32() if totp else None)
        if not self._store.add_officer(name, hasher().hash(creds.password), creds.totp_secret, now):
            raise AccountError(f"officer {name!r} exists (use `reset` for new credentials)")
        return creds

    def reset(self, name: str, totp: bool) -> Credentials:
        officer = self._existing(name)
        creds = Credentials(officer.name, secrets.token_urlsafe(12), pyotp.random_base32() if totp else None)
        self._store.reset_officer(officer.id, hasher().hash(creds.password), creds.totp_secret)
        return creds

    def disable(self, name: str) -> None:
        self._store.set_disabled(self._existing(name).id)

    def new_api_token(self, name: str, now: float) -> str:
        officer = self._existing(name)
        if officer.disabled:
            raise AccountError(f"officer {officer.name!r} is disabled")
        token = API_TOKEN_PREFIX + codes.new_token()
        self._store.add_api_token(codes.code_hash(token), officer.id, now)
        return token

    def by_api_token(self, token: str) -> Officer | None:
        officer_id = self._store.api_token_officer(codes.code_hash(token))
        officer = None if officer_id is None else self._store.officer_by_id(officer_id)
        return None if officer is None or officer.disabled else officer

    def any_api_tokens(self) -> bool:
        return self._store.api_token_count() > 0

    def login(self, name: str, password: str, code: str, now: float) -> tuple[Verdict, Officer | None]:
        officer = self._store.officer(name.strip())
        if officer is None:
            hasher().hash(password)  # about as slow as a real check: timing does not tell names apart
            return Verdict.WRONG, None
        password_ok = password_matches(officer.password_hash, password)
        step = None
        if officer.totp_secret is not None:
            step = totp_step(officer.totp_secret, code, now)
            if step is not None and step <= officer.totp_last_step:
                step = None  # a code is good once
        totp_ok = officer.totp_secret is None or step is not None
        result = judge(officer, now, password_ok, totp_ok, self.policy)
        if result.verdict in (Verdict.OK, Verdict.WRONG):
            self._store.record_login(
                officer.id, result.failures, result.locked_until, step if result.verdict is Verdict.OK else None
            )
        return result.verdict, officer

    def _existing(self, name: str) -> Officer:
        officer = self._store.officer(name.strip())
        if officer is None:
            raise AccountError(f"no officer {name.strip()!r} (see `proxitrace backend officer list`)")
        return officer

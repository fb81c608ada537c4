"""The backend's configuration: one TOML file, every key with a documented default, validated on load.

A pilot server is set up once by someone who is not its author; a wrong value must stop it at start with a
message naming the key (``ebid.pow_difficulty: must be between 0 and 32``), not surface later as a
confusing HTTP error. The dataclasses below are the reference for the file format; the same type checker
as the agent's config (``agent.configfile.build``) reads them.

Secrets (``server.admin_token``, ``federation.key``, each peer's ``secret``) live in this file, so it
should be readable by the backend's user only (the systemd unit's ``UMask=0077`` and
``ConfigurationDirectory`` give that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import risk
from agent.configfile import ConfigError, build, read_toml
from agent.protocol import transport
from agent.protocol.proof_of_work import MAX_DIFFICULTY
from agent.server.database import POSTGRESQL_PREFIXES, is_postgresql

DB_FILE = "backend.db"  # the SQLite store's name in data_dir (kept from before PostgreSQL support)

DEFAULT_BACKEND_CONFIG_PATH = Path("/etc/proxitrace/backend.toml")
DEFAULT_DATA_DIR = Path("/var/lib/proxitrace-backend")
_REGION = re.compile(r"^[A-Z0-9-]{1,16}$")


@dataclass(frozen=True)
class ServerSection:
    """``host``/``port``: where ``proxitrace backend serve`` listens (its ``--host``/``--port`` override them).
    The default, loopback, is for a backend behind a TLS-terminating reverse proxy on the same machine
    (``systemd/nginx-proxitrace.conf``); ``"0.0.0.0"`` or ``"::"`` makes it reachable on the network directly.

    ``data_dir`` holds the SQLite store, the signing key and the export folder (unless moved).
    ``database``: where the store is. Empty (the default) is the SQLite file ``<data_dir>/backend.db``, the
    embedded store for a pilot; a path is another SQLite file; a ``postgresql://user:password@host/db``
    URL is a PostgreSQL database several workers (``backend serve --workers N``) can share.

    ``admin_token`` empty disables the admin HTTP endpoints (the CLI still works on the same host).
    ``trust_forwarded_for``: take the client address for rate limiting from ``X-Forwarded-For`` (only
    behind a reverse proxy that sets it). ``tls_cert_file``/``tls_key_file`` (PEM, both or neither): serve
    HTTPS with them; without them the backend speaks plain HTTP, for loopback or a TLS-terminating proxy.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    country_code: int = 1
    region: str = "XX"
    data_dir: str = str(DEFAULT_DATA_DIR)
    database: str = ""
    admin_token: str = ""
    clock: str = "system"
    max_body_bytes: int = 1_048_576
    trust_forwarded_for: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass(frozen=True)
class SigningSection:
    """The ECDSA P-256 key that signs export files and responses (``proxitrace backend keygen``).

    ``key_id``/``key_version`` go into each export's signature info, as GAEN key servers name theirs.
    ``response_ttl_seconds`` is the ``exp`` of the ``Signature`` header of lists and of signed answers
    (``agent.protocol.answers``): after it an agent refuses the response, so an old list cannot be
    replayed as new.
    """

    private_key: str = ""
    key_id: str = "proxitrace"
    key_version: str = "v1"
    response_ttl_seconds: int = 7200


@dataclass(frozen=True)
class TanSection:
    """``valid_seconds``: a TAN's least validity; its stored expiry is rounded up to the hour
    (``agent.server.codes``). ``max_failures_per_hour``: wrong TANs (or enrolment codes) accepted per
    client address per hour before further attempts get 429."""

    valid_seconds: int = 86_400
    max_failures_per_hour: int = 10


@dataclass(frozen=True)
class UploadSection:
    """``keys_per_upload``: every key upload carries exactly this many keys, real ones padded with fake
    ones, so its size says nothing. ``min_response_seconds``: the TAN exchange and uploads answer no
    sooner than this, so timing does not tell a real upload from a fake one. ``token_ttl_seconds``: the
    upload token's least life; its expiry is rounded up to the end of a UTC day, so it names no moment."""

    keys_per_upload: int = 30
    token_ttl_seconds: int = 600
    min_response_seconds: float = 1.0


@dataclass(frozen=True)
class ListsSection:
    """Release buckets of ``bucket_seconds``; keys kept ``retention_days`` days after their own day.
    ``export_dir`` empty means ``<data_dir>/exports``."""

    bucket_seconds: int = 7200
    retention_days: int = 14
    export_dir: str = ""


@dataclass(frozen=True)
class EbidSection:
    """EBID mode. ``pow_difficulty`` = leading zero bits of SHA-256(challenge ‖ nonce).
    ``batch_periods``: EBIDs per batch when the device does not ask for fewer (192 periods of 15 min = 2 days).
    ``challenges_per_client_per_hour`` and ``max_open_challenges`` bound the one EBID endpoint that writes
    without any credential: per client address (counted under a daily key that names no address,
    ``agent.server.ratelimit``) and in rows (expired challenges are dropped first; when the cap is
    reached the backend answers 503 until some expire).
    ``status_polls_per_day``: status requests per registration per UTC day. ``tolerance_periods``: how
    many periods (0 or 1) before or after its own an EBID may be reported as received.
    ``access_token_ttl_seconds``: an access token's least life; its expiry is rounded up to the end of a
    UTC day (a poll's moment must not be stored)."""

    period_seconds: int = 900
    batch_periods: int = 192
    pow_difficulty: int = 20
    challenge_ttl_seconds: int = 600
    challenges_per_client_per_hour: int = 60
    max_open_challenges: int = 10_000
    enrolment_valid_seconds: int = 30 * 86_400
    access_token_ttl_seconds: int = 900
    status_polls_per_day: int = 4
    tolerance_periods: int = 1


@dataclass(frozen=True)
class PeerSection:
    """A federated backend: its country code, base URL and the secret both sides share for
    authenticating backend-to-backend requests."""

    country_code: int = 0
    url: str = ""
    secret: str = ""


@dataclass(frozen=True)
class FederationSection:
    """``key`` is K_G (32 hex digits), shared by all federated backends; empty means a backend of its own
    that keeps a random K_G in its store. ``retry_seconds``: first delay before re-sending a forward
    that failed (doubling up to an hour). ``allow_insecure_http_lab``: let a peer's URL be plain http:// to a
    host other than loopback (a lab only: forwards carry pseudonyms of people at risk)."""

    key: str = ""
    allow_insecure_http_lab: bool = False
    max_clock_skew_seconds: int = 300
    retry_seconds: float = 30.0
    peers: tuple[PeerSection, ...] = ()


@dataclass(frozen=True)
class PortalSection:
    """The health authority's pages and the operator's dashboard (``/portal/``, plus ``/metrics``).

    ``host`` empty serves them on the device API's listener; a host (and ``port``) gives them a listener of
    their own, and the device API then has no portal routes: the pages need not face the internet.
    ``secure_cookies``: session cookies carry ``Secure`` (turn off only for plain http on a test bed that is
    not localhost). After ``max_failed_logins`` wrong passwords or codes in a row an account is locked for
    ``lockout_seconds``; every failed login is answered no sooner than ``failure_delay_seconds``.
    """

    enabled: bool = True
    host: str = ""
    port: int = 8081
    session_seconds: int = 8 * 3600
    secure_cookies: bool = True
    max_failed_logins: int = 5
    lockout_seconds: int = 900
    failure_delay_seconds: float = 1.0
    enrolment_batch_max: int = 500


@dataclass(frozen=True)
class BackendConfig:
    server: ServerSection = field(default_factory=ServerSection)
    signing: SigningSection = field(default_factory=SigningSection)
    tan: TanSection = field(default_factory=TanSection)
    upload: UploadSection = field(default_factory=UploadSection)
    lists: ListsSection = field(default_factory=ListsSection)
    ebid: EbidSection = field(default_factory=EbidSection)
    federation: FederationSection = field(default_factory=FederationSection)
    portal: PortalSection = field(default_factory=PortalSection)
    risk: dict[str, Any] = field(default_factory=dict)
    """The EBID status verdict's risk model: the same ``[risk]`` keys as ``agent.risk.RiskSettings``
    (``model = "swisscovid"`` by default, or ``"cwa"`` with its ``[risk.cwa]`` table)."""

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def database(self) -> str | Path:
        """The store: a ``postgresql://`` URL, or the SQLite file's path."""
        target = self.server.database
        if is_postgresql(target):
            return target
        return Path(target) if target else self.data_dir / DB_FILE

    @property
    def signing_key_path(self) -> Path:
        return Path(self.signing.private_key) if self.signing.private_key else self.data_dir / "signing-key.pem"

    @property
    def export_dir(self) -> Path:
        return Path(self.lists.export_dir) if self.lists.export_dir else self.data_dir / "exports"

    @property
    def federation_key(self) -> bytes | None:
        return bytes.fromhex(self.federation.key) if self.federation.key else None


def load_backend_config(path: Path | None) -> BackendConfig:
    """Read ``path`` (or /etc/proxitrace/backend.toml when it exists, else the defaults) and check it."""
    if path is None:
        if not DEFAULT_BACKEND_CONFIG_PATH.exists():
            return backend_config_from_dict({})
        path = DEFAULT_BACKEND_CONFIG_PATH
    return backend_config_from_dict(read_toml(path))


def backend_config_from_dict(raw: dict[str, Any]) -> BackendConfig:
    config = build(BackendConfig, raw, "")
    _check(config)
    return config


def _between(key: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{key}: must be between {lo} and {hi}, got {value}")


def _check(c: BackendConfig) -> None:
    if not c.server.host or any(ch.isspace() for ch in c.server.host):
        raise ConfigError(f"server.host: an address or host name to listen on, got {c.server.host!r}")
    _between("server.port", c.server.port, 0, 65535)
    _between("server.country_code", c.server.country_code, 0, 255)
    if not _REGION.match(c.server.region):
        raise ConfigError(f"server.region: 1-16 of A-Z, 0-9 or '-', got {c.server.region!r}")
    if not c.server.data_dir:
        raise ConfigError("server.data_dir: must not be empty")
    if c.server.database.startswith(("postgres:", "postgresql:")) and not is_postgresql(c.server.database):
        raise ConfigError(f"server.database: a PostgreSQL URL starts with {' or '.join(POSTGRESQL_PREFIXES)}")
    if bool(c.server.tls_cert_file) != bool(c.server.tls_key_file):
        raise ConfigError("server.tls_cert_file: set both tls_cert_file and tls_key_file, or neither")
    _between("server.max_body_bytes", c.server.max_body_bytes, 1024, 64 * 1024 * 1024)
    if c.server.admin_token and len(c.server.admin_token) < 16:
        raise ConfigError("server.admin_token: use at least 16 characters (or leave empty to disable)")
    _between("signing.response_ttl_seconds", c.signing.response_ttl_seconds, 60, 14 * 86_400)
    if not c.signing.key_id or not c.signing.key_version:
        raise ConfigError("signing.key_id: key_id and key_version must not be empty")
    _between("tan.valid_seconds", c.tan.valid_seconds, 60, 30 * 86_400)
    _between("tan.max_failures_per_hour", c.tan.max_failures_per_hour, 1, 1_000_000)
    _between("upload.keys_per_upload", c.upload.keys_per_upload, 1, 1000)
    _between("upload.token_ttl_seconds", c.upload.token_ttl_seconds, 10, 86_400)
    _between("upload.min_response_seconds", c.upload.min_response_seconds, 0, 30)
    if c.lists.bucket_seconds <= 0 or 86_400 % c.lists.bucket_seconds:
        raise ConfigError(f"lists.bucket_seconds: must divide a day (86400), got {c.lists.bucket_seconds}")
    _between("lists.retention_days", c.lists.retention_days, 1, 60)
    if c.ebid.period_seconds <= 0 or 86_400 % c.ebid.period_seconds:
        raise ConfigError(f"ebid.period_seconds: must divide a day (86400), got {c.ebid.period_seconds}")
    _between("ebid.batch_periods", c.ebid.batch_periods, 1, 14 * 86_400 // c.ebid.period_seconds)
    _between("ebid.pow_difficulty", c.ebid.pow_difficulty, 0, MAX_DIFFICULTY)
    _between("ebid.challenge_ttl_seconds", c.ebid.challenge_ttl_seconds, 10, 86_400)
    _between("ebid.challenges_per_client_per_hour", c.ebid.challenges_per_client_per_hour, 1, 1_000_000)
    _between("ebid.max_open_challenges", c.ebid.max_open_challenges, 1, 10_000_000)
    _between("ebid.enrolment_valid_seconds", c.ebid.enrolment_valid_seconds, 60, 366 * 86_400)
    _between("ebid.access_token_ttl_seconds", c.ebid.access_token_ttl_seconds, 10, 86_400)
    _between("ebid.status_polls_per_day", c.ebid.status_polls_per_day, 1, 1000)
    _between("ebid.tolerance_periods", c.ebid.tolerance_periods, 0, 1)
    if c.federation.key and not re.fullmatch(r"[0-9a-fA-F]{32}", c.federation.key):
        raise ConfigError("federation.key: K_G must be 32 hex digits (16 bytes)")
    _between("federation.max_clock_skew_seconds", c.federation.max_clock_skew_seconds, 1, 3600)
    _between("federation.retry_seconds", c.federation.retry_seconds, 0.01, 3600)
    _between("portal.port", c.portal.port, 0, 65535)
    _between("portal.session_seconds", c.portal.session_seconds, 60, 7 * 86_400)
    _between("portal.max_failed_logins", c.portal.max_failed_logins, 1, 100)
    _between("portal.lockout_seconds", c.portal.lockout_seconds, 1, 7 * 86_400)
    _between("portal.failure_delay_seconds", c.portal.failure_delay_seconds, 0, 30)
    _between("portal.enrolment_batch_max", c.portal.enrolment_batch_max, 1, 10_000)
    if not isinstance(c.risk, dict):
        raise ConfigError("risk: expected a table")
    try:
        risk.RiskSettings.from_dict(c.risk)
    except risk.RiskConfigError as exc:
        raise ConfigError(str(exc)) from None
    if c.federation.peers and not c.federation.key:
        raise ConfigError("federation.key: federation peers need the shared K_G")
    seen: set[int] = set()
    for i, peer in enumerate(c.federation.peers):
        key = f"federation.peers[{i}]"
        _between(f"{key}.country_code", peer.country_code, 0, 255)
        if peer.country_code == c.server.country_code:
            raise ConfigError(f"{key}.country_code: {peer.country_code} is this backend's own country code")
        if peer.country_code in seen:
            raise ConfigError(f"{key}.country_code: {peer.country_code} appears twice")
        seen.add(peer.country_code)
        refusal = transport.url_refusal(
            peer.url, f"{key}.url", c.federation.allow_insecure_http_lab, "federation.allow_insecure_http_lab"
        )
        if refusal:
            raise ConfigError(refusal)
        if len(peer.secret) < 16:
            raise ConfigError(f"{key}.secret: use at least 16 characters")

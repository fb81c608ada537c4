"""The sync edge's own settings: which backend, which keys to trust, how often. Built from the agent's
config by ``agent.config.sync_settings``; the edge itself never reads config."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

PENDING_REPORT = "pending_report"
"""The store credential holding what a redeemed TAN bought (an upload token, or submission tokens) until
the report is sent: a report cut off after the TAN was spent is sent later with the same TAN from here
instead of losing it (consent comes before the TAN is spent: ``check_tan`` reads what it carries without
spending it). Here, not in the service, because the daemon's status reads it and must not import the list
pipeline to do so."""


@dataclass(frozen=True)
class KeyServer:
    """A plain GAEN key server: its ``index.txt`` and the key its exports are signed with."""

    index_url: str
    public_key: ec.EllipticCurvePublicKey
    key_id: str


@dataclass(frozen=True)
class SyncSettings:
    """``public_key`` None: nothing from the backend can be verified, so no list is pulled and no answer
    (server info, upload token, EBID registration, batches, verdicts, submission key and tokens) is used
    (``NotConfigured``). ``first_retry_seconds``/``max_retry_seconds`` bound the backoff after a failure.
    ``submission_spread_seconds``: an EBID report's separate submissions go at uniform random times over
    this long. ``dummy_traffic``: the daemon makes fake reports (same sizes, same timing) at exponential
    intervals of mean ``dummy_mean_interval_seconds``, so a real report does not stand out on the wire."""

    base_url: str
    public_key: ec.EllipticCurvePublicKey | None
    key_id: str = "proxitrace"
    interval_seconds: float = 7200.0
    jitter_seconds: float = 600.0
    status_interval_seconds: float = 21_600.0
    first_retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0
    retention_days: int = 14
    key_server: KeyServer | None = None
    ca_file: str = ""
    """PEM CA bundle trusted for the backend's TLS certificate instead of the system store ("" = system)."""
    submission_spread_seconds: float = 600.0
    reregister_spread_seconds: float = 1800.0
    """After an erasure the device registers again at a uniformly random time within this long, not at
    once: the backend sees a pseudonym erased and a capability spent, and the delay mixes the two with
    other devices' erasures and registrations, and lets the pooled connection that carried the old
    pseudonym's token close (aiohttp keeps an idle one 15 s). Shorter than one status interval, so
    advertising resumes within it; the device advertises nothing meanwhile."""
    dummy_traffic: bool = True
    dummy_mean_interval_seconds: float = 86_400.0
    match_workers: int = 0
    """Processes a large list is matched in (0: one per core); small lists are matched in the daemon."""

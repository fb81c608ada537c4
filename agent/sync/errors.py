"""What can go wrong talking to the backend, sorted by what the caller does about it.

``BackendUnavailable`` is retried with backoff; ``BackendRefused`` and ``ListRejected`` are shown and not
retried at once; every ``reason`` is one line without keys, IDs or tokens, safe to log and to print.
"""

from __future__ import annotations


class SyncError(Exception):
    """Something the caller should show; ``reason`` is one line without keys, IDs or tokens."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(SyncError):
    """Network trouble, a timeout, HTTP 5xx or 429: try again later (``retry_after`` when the server said)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class BackendRefused(SyncError):
    """The backend answered 4xx; ``reason`` is its message."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class ListRejected(SyncError):
    """A list failed verification; it was not matched and the bundle tag did not move."""


class AnswerRejected(SyncError):
    """An answer was not signed by the pinned key, is stale, or answers another request; nothing of it was
    used (credentials, EBIDs and keys stay as they were)."""


class NotConfigured(SyncError):
    """A setting the request needs is missing (e.g. the backend's public key); ``reason`` names the key."""


class Unregistered(SyncError):
    """The backend does not know this device (never registered, its pseudonym erased after an at-risk
    verdict, or purged while silent): it must register again, with its capability if it has one."""

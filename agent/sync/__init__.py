"""The sync edge: the agent's side of the backend.

``client`` speaks HTTP and nothing else, ``verify`` decides (purely) whether a list may be matched or an answer used,
``service`` applies the results to the store and key ring and runs the daemon's loops; ``errors`` sorts
failures by what to do about them. It takes its own ``SyncSettings`` (``agent.config.sync_settings``
builds them) and imports no config, daemon, CLI or backend module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.protocol.wire import RiskVerdict
    from agent.sync.client import MAX_DOWNLOAD_BYTES, BackendClient, Progress, open_session, tls_context
    from agent.sync.errors import (
        AnswerRejected,
        BackendRefused,
        BackendUnavailable,
        ListRejected,
        NotConfigured,
        SyncError,
        Unregistered,
    )
    from agent.sync.service import SyncOutcome, SyncService, reported_onset
    from agent.sync.settings import KeyServer, SyncSettings
    from agent.sync.verify import BUNDLE_TAG_HEADER, Refusal, VerifiedList, VerifiedPull, verify_answer, verify_pull

_HOMES = {
    "agent.protocol.wire": ("RiskVerdict",),
    "agent.sync.client": ("MAX_DOWNLOAD_BYTES", "BackendClient", "Progress", "open_session", "tls_context"),
    "agent.sync.errors": (
        "AnswerRejected",
        "BackendRefused",
        "BackendUnavailable",
        "ListRejected",
        "NotConfigured",
        "SyncError",
        "Unregistered",
    ),
    "agent.sync.service": ("SyncOutcome", "SyncService", "reported_onset"),
    "agent.sync.settings": ("KeyServer", "SyncSettings"),
    "agent.sync.verify": (
        "BUNDLE_TAG_HEADER",
        "Refusal",
        "VerifiedList",
        "VerifiedPull",
        "verify_answer",
        "verify_pull",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Each name is imported from its module when first asked for (PEP 562): the daemon of a device
    with no backend configured, or ``agent.config`` reading ``SyncSettings``, then never loads aiohttp
    nor the list pipeline (numpy, protobuf): tens of megabytes of RSS (issue 17)."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BUNDLE_TAG_HEADER",
    "MAX_DOWNLOAD_BYTES",
    "AnswerRejected",
    "BackendClient",
    "BackendRefused",
    "BackendUnavailable",
    "KeyServer",
    "ListRejected",
    "NotConfigured",
    "Progress",
    "Refusal",
    "RiskVerdict",
    "SyncError",
    "SyncOutcome",
    "SyncService",
    "SyncSettings",
    "Unregistered",
    "VerifiedList",
    "VerifiedPull",
    "open_session",
    "reported_onset",
    "tls_context",
    "verify_answer",
    "verify_pull",
]

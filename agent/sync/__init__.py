"""The sync edge: the agent's side of the backend.

``client`` speaks HTTP and nothing else, ``verify`` decides (purely) whether a list may be matched or an answer used,
``service`` applies the results to the store and key ring and runs the daemon's loops; ``errors`` sorts
failures by what to do about them. It takes its own ``SyncSettings`` (``agent.config.sync_settings``
builds them) and imports no config, daemon, CLI or backend module.
"""

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

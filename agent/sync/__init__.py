"""The sync edge: the agent's side of the backend.

``client`` speaks HTTP and nothing else, ``verify`` decides (purely) whether a list may be matched,
``service`` applies the results to the store and key ring and runs the daemon's loops; ``errors`` sorts
failures by what to do about them. It takes its own ``SyncSettings`` (``agent.config.sync_settings``
builds them) and imports no config, daemon, CLI or backend module.
"""

from agent.protocol.wire import RiskVerdict
from agent.sync.client import MAX_DOWNLOAD_BYTES, BackendClient, Progress, open_session
from agent.sync.errors import BackendRefused, BackendUnavailable, ListRejected, NotConfigured, SyncError
from agent.sync.service import SyncOutcome, SyncService
from agent.sync.settings import KeyServer, SyncSettings
from agent.sync.verify import BUNDLE_TAG_HEADER, Refusal, VerifiedList, VerifiedPull, verify_pull

__all__ = [
    "BUNDLE_TAG_HEADER",
    "MAX_DOWNLOAD_BYTES",
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
    "VerifiedList",
    "VerifiedPull",
    "open_session",
    "verify_pull",
]

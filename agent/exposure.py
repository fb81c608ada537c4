"""From a verified list of published keys to stored, explainable exposure results.

This is the one place that joins matching, risk scoring and the store, so the daemon's sync, ``proxitrace
match`` and the test-bed all decide exposure the same way. Results are stored per day with the day's
explanation (buckets, minutes, why) and never with an ID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from agent.clock import DAY, day_of
from agent.match_workers import ChunkMatcher, StartMethod, cores, match_chunks, worker_count
from agent.matching import KeyMatch, SightingIndex, match_dp3t, match_gaen, resolve
from agent.protocol.export import ExportError, StreamedExport, export_identity
from agent.risk import (
    Assessment,
    CalibrationConfidence,
    KeyAttributes,
    ReportType,
    RiskSettings,
    assess,
    exposure_windows_from_sightings,
)
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.store import ExposureRecord, Store


@dataclass(frozen=True)
class ListOutcome:
    sha256: str
    keys: int
    matched_keys: int
    already_processed: bool
    assessment: Assessment | None

    @property
    def notify(self) -> bool:
        return bool(self.assessment and self.assessment.notify)


IDENTITY_PREFIX = "export.sig "
"""How a file's ``export_identity`` is kept among the processed lists' export.bin digests (hex both):
a prefix no digest has, so the two kinds of row never meet."""


def list_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def processed_before(store: Store, source: BinaryIO) -> bool:
    """Whether the export file in ``source`` was matched before, known from its export.sig alone
    (``export_identity`` says why that is sound), so a national file seen again costs a look at the end
    of its zip instead of inflating and hashing tens of megabytes. False for a file not recognised, or
    unreadable: verifying it then gives the reason."""
    try:
        identity = export_identity(source)
    except ExportError:
        return False
    return store.is_list_processed(_identity_row(identity))


def _identity_row(identity: bytes) -> str:
    return IDENTITY_PREFIX + identity.hex()


def match_keys(
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    index: SightingIndex,
    now: float,
    progress: Callable[[int], None] | None = None,
) -> list[KeyMatch]:
    if scheme is SchemeName.GAEN:
        return match_gaen(keys, index, progress=progress)
    if scheme is SchemeName.DP3T:
        return match_dp3t(keys, index, today=day_of(now), progress=progress)
    raise ValueError(f"{scheme} lists are not matched on the device (the backend scores EBID contacts)")


def assess_matches(matches: Sequence[KeyMatch], settings: RiskSettings, receiver_correction: float) -> Assessment:
    windows = []
    for m in matches:
        key = KeyAttributes(
            transmission_risk_level=m.key.transmission_risk_level or None,
            report_type=ReportType(m.key.report_type) if m.key.report_type in ReportType._value2member_map_ else None,
            days_since_onset=m.key.days_since_onset,
        )
        windows.extend(
            exposure_windows_from_sightings(
                m.windows,
                tx_power=m.tx_power,
                receiver_correction=receiver_correction,
                key=key,
                calibration_confidence=CalibrationConfidence.LOWEST,
                config=settings.windows,
            )
        )
    return assess(windows, settings.model)


def process_list(
    store: Store,
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    digest: str,
    source: str,
    now: float,
    settings: RiskSettings,
    receiver_correction: float,
    retention_days: int = 14,
    progress: Callable[[int], None] | None = None,
) -> ListOutcome:
    """Match one verified list against everything heard within retention and store the per-day results
    together with the list's digest (so it is never matched twice)."""
    if store.is_list_processed(digest):
        return ListOutcome(digest, len(keys), 0, True, None)
    index = SightingIndex(store.windows(scheme=scheme, since=now - retention_days * DAY))
    matches = match_keys(scheme, keys, index, now, progress)
    return _record(store, scheme, matches, digest, source, len(keys), now, settings, receiver_correction)


def process_export(
    store: Store,
    scheme: SchemeName,
    export: StreamedExport,
    source: str,
    now: float,
    settings: RiskSettings,
    receiver_correction: float,
    retention_days: int = 14,
    workers: int = 1,
    start_method: StartMethod = "fork",
    progress: Callable[[int], None] | None = None,
) -> ListOutcome:
    """``process_list`` for a streamed export of any size: the keys are read chunk by chunk and matched
    over ``workers`` processes, and nothing is stored unless every key of the file passed its checks
    (``ExportError`` otherwise). Only the heard IDs are loaded up front; the windows are read for the
    few IDs that were hit. The list is remembered by export.bin's SHA-256 (known before any key is read)
    and by its ``export_identity``, so ``processed_before`` knows the file again without reading it."""
    if scheme is SchemeName.EBID:
        raise ValueError(f"{scheme} lists are not matched on the device (the backend scores EBID contacts)")
    digest = export.summary.export_sha256.hex()
    count = export.summary.key_count
    if store.is_list_processed(digest):
        outcome = ListOutcome(digest, count, 0, True, None)
    else:
        ids = store.heard_ids(scheme, since=now - retention_days * DAY)
        index = SightingIndex((), ids)
        matcher = ChunkMatcher(scheme, export.summary, day_of(now))
        hits = match_chunks(matcher, export.chunks(), index, ids, workers, start_method, progress)
        matches = resolve(hits, lambda wanted: store.windows_by_id(wanted, scheme))
        outcome = _record(store, scheme, matches, digest, source, count, now, settings, receiver_correction)
    # after the results: a file is never recognised as processed before its results are stored
    store.record_exposures((), processed=(_identity_row(export.summary.signature_sha256), source, count, now))
    return outcome


def workers_for(export: StreamedExport, configured: int) -> int:
    """How many processes ``process_export`` should match ``export`` over, ``configured`` at most (the
    ``match_workers`` setting; 0: one per core): one (this process) for a list too small to repay
    starting workers (``match_workers.worker_count``)."""
    return worker_count(export.summary.key_count, configured or cores())


def _record(
    store: Store,
    scheme: SchemeName,
    matches: Sequence[KeyMatch],
    digest: str,
    source: str,
    keys: int,
    now: float,
    settings: RiskSettings,
    receiver_correction: float,
) -> ListOutcome:
    assessment = assess_matches(matches, settings, receiver_correction) if matches else None
    records = []
    if assessment is not None:
        explanation = assessment.explain().to_dict()
        for day in assessment.days:
            day_view = {k: v for k, v in explanation.items() if k != "days"}
            day_view["days"] = [d for d in explanation["days"] if d["day"] == day.day]
            records.append(ExposureRecord(day.day, scheme, day.crossed, float(day.score), day_view, now))
    store.record_exposures(records, processed=(digest, source, keys, now))
    return ListOutcome(digest, keys, len(matches), False, assessment)

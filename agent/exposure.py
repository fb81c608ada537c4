"""From a verified list of published keys to stored, explainable exposure results.

This is the one place that joins matching, risk scoring and the store, so the daemon's sync, ``proxitrace
match`` and the test-bed all decide exposure the same way. Results are stored per day with the day's
explanation (buckets, minutes, why) and never with an ID.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from agent.clock import DAY, day_of
from agent.match_workers import ChunkHits, ChunkMatcher, StartMethod, cores, match_chunks, worker_count
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
    processes: int = 1
    """How many processes the keys were matched over (0: not matched, already processed)."""

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


class HeardIds:
    """The IDs of one scheme heard within retention and their index, read from the store at most once
    for all the lists of one pass: a cold start pulls 14 daily files, and reading two weeks of sightings
    and indexing them (a fifth of a second for 50 peers) for each one was a fifth of the pass's CPU
    (``tests/bench/bench_national.py``). Lives for one pass, so what is heard meanwhile is in the next."""

    def __init__(self, store: Store, scheme: SchemeName, now: float, retention_days: int) -> None:
        self.scheme = scheme
        self._read = lambda: store.heard_ids(scheme, since=now - retention_days * DAY)
        self._found: tuple[list[bytes], SightingIndex] | None = None

    def get(self) -> tuple[list[bytes], SightingIndex]:
        if self._found is None:
            ids = self._read()
            self._found = (ids, SightingIndex((), ids))
        return self._found


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
        return ListOutcome(digest, len(keys), 0, True, None, processes=0)
    index = SightingIndex(store.windows(scheme=scheme, since=now - retention_days * DAY))
    matches = match_keys(scheme, keys, index, now, progress)
    return _record(store, scheme, matches, digest, source, len(keys), now, settings, receiver_correction)


@dataclass(frozen=True)
class ExportRun:
    """How one streamed list is matched and scored, whoever asks (the daemon's sync off the loop,
    ``proxitrace match``, the benches): what is recorded with its results (``source``, ``now``), how
    they are scored and how many processes match it."""

    scheme: SchemeName
    source: str
    now: float
    settings: RiskSettings
    receiver_correction: float
    retention_days: int = 14
    workers: int = 1
    start_method: StartMethod = "fork"


def process_export(
    store: Store,
    export: StreamedExport,
    run: ExportRun,
    progress: Callable[[int], None] | None = None,
    heard: HeardIds | None = None,
) -> ListOutcome:
    """``process_list`` for a streamed export of any size: the keys are read chunk by chunk and matched
    over ``run.workers`` processes, and nothing is stored unless every key of the file passed its checks
    (``ExportError`` otherwise). Only the heard IDs are loaded up front; the windows are read for the
    few IDs that were hit. The list is remembered by export.bin's SHA-256 (known before any key is read)
    and by its ``export_identity``, so ``processed_before`` knows the file again without reading it.
    ``heard``: the IDs, shared by all the lists of one pass (read here when not given)."""
    job = _ExportJob.begin(store, export, run, heard)
    if job.done is not None:
        return job.remember(store, job.done)
    return job.finish(store, job.match(progress))


async def process_export_off_loop(
    store: Store, export: StreamedExport, run: ExportRun, heard: HeardIds | None = None
) -> ListOutcome:
    """``process_export`` for the daemon: reading the heard IDs (a fifth of a second for two weeks of 50
    peers) and reading, checking and matching the keys (seconds for a national list) run in a thread
    (which feeds the worker processes), so the event loop keeps advertising, recording and answering
    meanwhile. What the thread reads from the store is one SELECT outside any transaction (the connection
    is shared across threads, SQLite serialises its use); every write stays on the loop's own thread,
    where every other writer of the store runs (two threads' transactions would interleave)."""
    job = _ExportJob.begin(store, export, run, heard)
    if job.done is not None:
        return job.remember(store, job.done)
    found = await asyncio.to_thread(job.match, None)
    return job.finish(store, found)


@dataclass(frozen=True)
class _ExportJob:
    """One streamed list between what is checked in the store first (``begin``), the heard IDs' read and
    the matching (``match``, safe in another thread: it only reads) and what is written (``finish``)."""

    export: StreamedExport
    run: ExportRun
    heard: HeardIds
    done: ListOutcome | None

    @classmethod
    def begin(cls, store: Store, export: StreamedExport, run: ExportRun, heard: HeardIds | None) -> _ExportJob:
        if run.scheme is SchemeName.EBID:
            raise ValueError(f"{run.scheme} lists are not matched on the device (the backend scores EBID contacts)")
        heard = heard or HeardIds(store, run.scheme, run.now, run.retention_days)
        if heard.scheme is not run.scheme:
            raise ValueError(f"a {run.scheme} list matched against the IDs of {heard.scheme}")
        digest, count = export.summary.export_sha256.hex(), export.summary.key_count
        done = ListOutcome(digest, count, 0, True, None, processes=0) if store.is_list_processed(digest) else None
        return cls(export, run, heard, done)

    def match(self, progress: Callable[[int], None] | None) -> ChunkHits:
        assert self.done is None, "a list processed before is not matched"
        ids, index = self.heard.get()
        run = self.run
        matcher = ChunkMatcher(run.scheme, self.export.summary, day_of(run.now))
        return match_chunks(matcher, self.export.chunks(), index, ids, run.workers, run.start_method, progress)

    def finish(self, store: Store, found: ChunkHits) -> ListOutcome:
        summary, run = self.export.summary, self.run
        matches = resolve(found.hits, lambda wanted: store.windows_by_id(wanted, run.scheme))
        outcome = _record(
            store,
            run.scheme,
            matches,
            summary.export_sha256.hex(),
            run.source,
            summary.key_count,
            run.now,
            run.settings,
            run.receiver_correction,
        )
        return self.remember(store, dataclasses.replace(outcome, processes=found.processes))

    def remember(self, store: Store, outcome: ListOutcome) -> ListOutcome:
        """Also remember the file by its export.sig; after its results, so a file is never recognised
        as processed before they are stored."""
        row = (_identity_row(self.export.summary.signature_sha256), self.run.source, outcome.keys, self.run.now)
        store.record_exposures((), processed=row)
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

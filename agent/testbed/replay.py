"""``testbed replay``: a trace pushed through the agent's own path, pair by pair, and scored.

Nothing here re-implements the agent. Each transmitter gets real keys of the chosen scheme and broadcasts
the scheme's real ID at each row's time; the advert's service data goes through the scanner's decoder into
a real :class:`SightingAggregator` and a real SQLite :class:`Store` per receiver (one temporary folder
each); each positive transmitter's keys are published as a signed export, verified with
:func:`verify_export` and matched with :func:`process_list` exactly as ``proxitrace sync`` and ``match``
do, with the risk settings and notify decision configured. What differs from a device is only where the
adverts come from: the trace's rows instead of the radio.

Each positive transmitter's list is processed on its own, so every (receiver, transmitter) pair gets its
own decision; that is what a trace with ground truth can score.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from agent.ble.scanner import RSSI_RANGE, TX_RANGE
from agent.clock import DAY, day_of
from agent.exposure import assess_matches, match_keys, process_list
from agent.matching import KeyMatch, SightingIndex
from agent.protocol import wire
from agent.protocol.export import SignatureInfo, VerifiedExport, build_export, verify_export
from agent.risk import Assessment, RiskSettings
from agent.schemes import dp3t, ebid, gaen
from agent.schemes.base import Broadcast, DecodedAdvert, Scheme, SchemeName
from agent.schemes.decoder import decode_service_data
from agent.schemes.published import DP3T_KEY_LEN, GAEN_KEY_LEN, PublishedKey
from agent.server.ebid import with_declared_tx_power
from agent.server.ebid_store import Exposure
from agent.server.scoring import ServerRiskScorer
from agent.sightings import SightingWindow
from agent.store import SightingAggregator, Store
from agent.sync.service import scan_records
from agent.testbed.trace import PairTruth, Trace, ground_truth

DEFAULT_TX_POWER = -8  # dBm advertised when a row names none: the agent's calibration default
FLUSH_EVERY = 20_000  # aggregated windows held per receiver before a store flush (one transaction)
REPLAY_SIGNER = SignatureInfo("replay", "v1")


class ReplayError(ValueError):
    """A trace this replay cannot score (one line, said to the user as is)."""


@dataclass(frozen=True)
class ReplaySettings:
    scheme: SchemeName = SchemeName.GAEN
    risk: RiskSettings = field(default_factory=RiskSettings)
    contact_distance_m: float = 2.0
    contact_minutes: float = 15.0
    receiver_correction: float = 0.0
    positives: frozenset[str] | None = None  # None: every transmitter is tested positive, one list each


@dataclass(frozen=True)
class PairResult:
    receiver: str
    transmitter: str
    true_contact: bool
    close_minutes: float  # the pair's most on one day
    notified: bool
    score: float  # the risk model's highest daily score (weighted minutes for SwissCovid)
    heard: int  # rows the receiver heard from this transmitter


@dataclass(frozen=True)
class Confusion:
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        notified = self.true_positives + self.false_positives
        return self.true_positives / notified if notified else 1.0

    @property
    def recall(self) -> float:
        contacts = self.true_positives + self.false_negatives
        return self.true_positives / contacts if contacts else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def confusion(pairs: Sequence[PairResult]) -> Confusion:
    return Confusion(
        sum(p.true_contact and p.notified for p in pairs),
        sum(p.notified and not p.true_contact for p in pairs),
        sum(p.true_contact and not p.notified for p in pairs),
        sum(not p.true_contact and not p.notified for p in pairs),
    )


@dataclass(frozen=True)
class PairEvidence:
    """What decided one pair, kept so other risk settings can re-score it (sweep, fit, the timeline).
    List schemes: the positive's published keys as matched in the receiver's store. EBID: the exposures
    the backend holds for the receiver from the positive's report, its declared TX power applied."""

    matches: tuple[KeyMatch, ...] = ()
    exposures: tuple[Exposure, ...] = ()


def assess_pair(
    evidence: PairEvidence, settings: RiskSettings, receiver_correction: float, until: float | None = None
) -> Assessment | None:
    """The pair's assessment under ``settings`` by the scoring that decides it on the real path (the
    device's for lists, the backend's for EBID), on what was heard up to ``until`` (all of it: None);
    None when nothing was. The receiver correction applies to lists only: an EBID report carries
    attenuations the reporting device already corrected."""
    if evidence.exposures:
        exposures = evidence.exposures
        if until is not None:
            cut = (replace(e, scans=tuple(s for s in e.scans if s.time <= until)) for e in exposures)
            exposures = tuple(e for e in cut if e.scans)
        return settings.model.assess(ServerRiskScorer(settings).windows(exposures)) if exposures else None
    matches = evidence.matches
    if until is not None:
        cut_matches = (replace(m, windows=tuple(w for w in m.windows if w.window_start <= until)) for m in matches)
        matches = tuple(m for m in cut_matches if m.windows)
    return assess_matches(matches, settings, receiver_correction) if matches else None


def best_score(assessment: Assessment | None) -> float:
    """The highest daily score (weighted minutes for SwissCovid); 0 without an assessment."""
    return max((float(d.score) for d in assessment.days), default=0.0) if assessment else 0.0


def attenuations(evidence: PairEvidence, receiver_correction: float) -> list[tuple[float, float]]:
    """(time, typical attenuation in dB) per sighting window (lists) or scan record (EBID), as scored."""
    if evidence.exposures:
        return [(s.time, float(s.typical_attenuation)) for e in evidence.exposures for s in e.scans]
    return [
        (
            w.window_start,
            (m.tx_power if m.tx_power is not None else DEFAULT_TX_POWER) - (w.rssi_mean + receiver_correction),
        )
        for m in evidence.matches
        for w in m.windows
    ]


@dataclass(frozen=True)
class ReplayResult:
    scheme: str
    rows: int
    seconds: float
    pairs: tuple[PairResult, ...]
    evidence: dict[tuple[str, str], PairEvidence]  # (receiver, transmitter): what the sweep re-scores
    risk: RiskSettings  # as scored: the configured settings with the trace's scan interval

    @property
    def confusion(self) -> Confusion:
        return confusion(self.pairs)


class _Transmitter:
    """One device's real keys and the broadcast live at a time (cached while it stays valid)."""

    def __init__(self, scheme: SchemeName, first: float, last: float) -> None:
        self.scheme_name = scheme
        self._current: Broadcast | None = None
        self._tx_power: int | None = None
        self._decoded: DecodedAdvert | None = None
        self.scheme: Scheme
        if scheme is SchemeName.GAEN:
            self.teks = tuple(gaen.new_tek(day * DAY) for day in range(day_of(first), day_of(last) + 1))
            self.scheme = gaen.GaenScheme(self.teks)
        elif scheme is SchemeName.DP3T:
            self.state = dp3t.new_key_state(first)
            self.scheme = dp3t.Dp3tScheme(self.state)
        else:
            self.batch = _ebid_batch(first, last)
            self.scheme = ebid.EbidScheme(self.batch)

    def advert(self, t: float, tx_power: int) -> DecodedAdvert:
        """What the scanner decodes from this device's advert at ``t``: the same decoder as on air."""
        b = self._current
        if b is None or not b.valid_from <= t < b.valid_until or tx_power != self._tx_power:
            b = self.scheme.broadcast_at(t, tx_power)
            if b is None:
                raise ReplayError("a transmitter's keys do not cover a row's time")
            decoded = decode_service_data(b.service_uuid16, b.service_data)
            if not isinstance(decoded, DecodedAdvert):
                raise ReplayError(f"the scheme's own advert did not decode: {decoded.reason}")
            self._current, self._tx_power, self._decoded = b, tx_power, decoded
        assert self._decoded is not None
        return self._decoded

    def published(self) -> list[PublishedKey]:
        """The keys a positive test uploads: every day of the trace."""
        if self.scheme_name is SchemeName.GAEN:
            return [PublishedKey(k.key, k.rolling_start_interval_number, k.rolling_period) for k in self.teks]
        return [PublishedKey(self.state.start_sk, self.state.start_day * gaen.ROLLING_PERIOD)]


def _ebid_batch(first: float, last: float) -> ebid.EbidBatch:
    """The EBIDs a backend would issue one device for the trace's periods: AES(BK_t, PUID) under a fresh
    BK_t per period, with an ECC (country 0) under a fresh federation key."""
    puid, federation = os.urandom(ebid.PUID_LEN), os.urandom(ebid.KEY_LEN)
    entries = []
    for period in range(ebid.period_of(first), ebid.period_of(last) + 1):
        eid = ebid.make_ebid(os.urandom(ebid.KEY_LEN), puid)
        entries.append(ebid.EbidEntry(period, eid, ebid.make_ecc(federation, eid, 0)))
    return ebid.EbidBatch(ebid.DEFAULT_PERIOD_SECONDS, tuple(entries))


def _signed_list(
    keys: list[PublishedKey], scheme: SchemeName, now: float, signer: ec.EllipticCurvePrivateKey
) -> VerifiedExport:
    """The keys as the backend would publish them, and back through the device's verification."""
    start = min(k.rolling_start_interval_number for k in keys) * 600
    data = build_export(
        keys,
        start=start,
        end=int(now),
        region="replay",
        batch_num=1,
        batch_size=1,
        signature_info=REPLAY_SIGNER,
        private_key=signer,
    )
    return verify_export(
        data,
        {REPLAY_SIGNER.verification_key_id: signer.public_key()},
        key_length=GAEN_KEY_LEN if scheme is SchemeName.GAEN else DP3T_KEY_LEN,
    )


def replay(
    trace: Trace,
    settings: ReplaySettings,
    workdir: Path | None = None,
    progress: Callable[[float], None] | None = None,
) -> ReplayResult:
    """Every row through the agent's path; per pair the decision, against the trace's ground truth."""
    began = time.perf_counter()
    first, last = trace.span
    receivers = trace.devices
    positives = _positives(trace, settings)
    transmitters = {name: _Transmitter(settings.scheme, first, last) for name in receivers}
    now = (day_of(last) + 1) * DAY + 3 * 3600  # the day after: its keys are out, as after a real release
    retention = max(14, day_of(now) - day_of(first) + 1)
    windows = replace(settings.risk.windows, scan_interval_seconds=trace.scan.period_seconds)
    risk = replace(settings.risk, windows=windows)
    with tempfile.TemporaryDirectory(prefix="proxitrace-replay-", dir=workdir) as tmp:
        stores = {name: Store.open(Path(tmp) / f"rx{i}") for i, name in enumerate(receivers)}
        try:
            heard = _receive(trace, transmitters, stores, progress)
            truth = ground_truth(trace.rows, settings.contact_distance_m)
            if settings.scheme is SchemeName.EBID:
                pairs, evidence = _decide_ebid(
                    trace, transmitters, stores, positives, settings, risk, now, truth, heard
                )
            else:
                pairs, evidence = _decide_lists(
                    transmitters, stores, positives, settings, risk, now, retention, truth, heard
                )
        finally:
            for store in stores.values():
                store.close()
    if progress is not None:
        progress(1.0)
    return ReplayResult(
        scheme=str(settings.scheme),
        rows=len(trace.rows),
        seconds=round(time.perf_counter() - began, 3),
        pairs=tuple(pairs),
        evidence=evidence,
        risk=risk,
    )


_Decided = tuple[list[PairResult], dict[tuple[str, str], PairEvidence]]


def _decide_lists(
    transmitters: dict[str, _Transmitter],
    stores: dict[str, Store],
    positives: frozenset[str],
    settings: ReplaySettings,
    risk: RiskSettings,
    now: float,
    retention: int,
    truth: dict[tuple[str, str], PairTruth],
    heard: dict[tuple[str, str], int],
) -> _Decided:
    """Each positive's keys as a signed list, processed by every other receiver's store."""
    signer = ec.generate_private_key(ec.SECP256R1())
    pairs = []
    evidence: dict[tuple[str, str], PairEvidence] = {}
    for tx_name in sorted(positives):
        verified = _signed_list(transmitters[tx_name].published(), settings.scheme, now, signer)
        for rx_name in stores:
            if rx_name == tx_name:
                continue
            pair, matched = _decide(
                stores[rx_name], rx_name, tx_name, verified, settings, risk, now, retention, truth, heard
            )
            evidence[(rx_name, tx_name)] = PairEvidence(matches=matched)
            pairs.append(pair)
    return pairs, evidence


def _decide_ebid(
    trace: Trace,
    transmitters: dict[str, _Transmitter],
    stores: dict[str, Store],
    positives: frozenset[str],
    settings: ReplaySettings,
    risk: RiskSettings,
    now: float,
    truth: dict[tuple[str, str], PairTruth],
    heard: dict[tuple[str, str], int],
) -> _Decided:
    """Each positive's report of the EBIDs it heard, as the device builds it, scored by the backend for
    each device those EBIDs belong to (the backend's PUID lookup: here, whose batch issued the EBID)."""
    owner = {e.ebid: name for name, t in transmitters.items() for e in t.batch.entries}
    declared = _declared_tx_power(trace)
    scorer = ServerRiskScorer(risk)
    pairs = []
    evidence: dict[tuple[str, str], PairEvidence] = {}
    for positive in sorted(positives):
        reported: dict[str, list[Exposure]] = defaultdict(list)
        for contact in _ebid_report(stores[positive], settings.receiver_correction):
            if contact.ebid in owner:
                reported[owner[contact.ebid]].append(Exposure(contact.period, contact.time, contact.scans))
        for rx_name in stores:
            if rx_name == positive:
                continue
            held = with_declared_tx_power(reported.get(rx_name, []), declared.get(rx_name, DEFAULT_TX_POWER))
            verdict = scorer(held, now) if held else None
            pair_truth = truth.get((rx_name, positive))
            days = pair_truth.close_minutes if pair_truth else {}
            pairs.append(
                PairResult(
                    receiver=rx_name,
                    transmitter=positive,
                    true_contact=bool(pair_truth and pair_truth.contact(settings.contact_minutes)),
                    close_minutes=round(max(days.values(), default=0.0), 2),
                    notified=bool(verdict and verdict.at_risk),
                    score=best_score(assess_pair(PairEvidence(exposures=tuple(held)), risk, 0.0)),
                    heard=heard.get((positive, rx_name), 0),
                )
            )
            evidence[(rx_name, positive)] = PairEvidence(exposures=tuple(held))
    return pairs, evidence


def _ebid_report(store: Store, receiver_correction: float) -> list[wire.ReportedContact]:
    """The contacts a report sends (``SyncService.ebid_contacts``): one per EBID heard, its scans by the
    device's rule (``scan_records``) against the reference TX power; the whole trace is contagious."""
    by_id: dict[bytes, list[SightingWindow]] = defaultdict(list)
    for w in store.windows(scheme=SchemeName.EBID):
        by_id[w.ephemeral_id].append(w)
    contacts = []
    for eid, windows in by_id.items():
        windows.sort(key=lambda w: w.first_seen)
        first = windows[0]
        scans = scan_records(windows, wire.EBID_REFERENCE_TX_POWER, receiver_correction)
        ecc = first.metadata[0] if len(first.metadata) == 1 else None
        contacts.append(wire.ReportedContact(ecc, eid, ebid.period_of(first.first_seen), first.first_seen, scans))
    return contacts


def _declared_tx_power(trace: Trace) -> dict[str, int]:
    """The TX power each device would declare at registration: the first its rows carry."""
    declared: dict[str, int] = {}
    for r in trace.rows:
        if r.tx_power is not None and r.tx_power in TX_RANGE:
            declared.setdefault(r.transmitter, r.tx_power)
    return declared


def _positives(trace: Trace, settings: ReplaySettings) -> frozenset[str]:
    """The devices whose keys are published (all, unless the settings name some); the trace must have them."""
    if not trace.heard_anything:
        raise ReplayError("the trace has no received adverts (every rssi is empty)")
    receivers = trace.devices
    positives = settings.positives if settings.positives is not None else frozenset(receivers)
    missing = positives - set(receivers)
    if missing:
        raise ReplayError(f"positive(s) not in the trace: {', '.join(sorted(missing))}")
    return positives


def _receive(
    trace: Trace,
    transmitters: dict[str, _Transmitter],
    stores: dict[str, Store],
    progress: Callable[[float], None] | None,
) -> dict[tuple[str, str], int]:
    """Each received row as the transmitter's advert at that time, through each receiver's sighting
    aggregator into its store, as the scanner hands them over; how many adverts each pair heard."""
    aggregators = {name: SightingAggregator() for name in stores}
    heard: dict[tuple[str, str], int] = {}
    for n, row in enumerate(trace.rows):
        if row.rssi is None or row.receiver == row.transmitter:
            continue
        if row.rssi not in RSSI_RANGE:
            continue  # the scanner rejects it too
        tx = row.tx_power if row.tx_power is not None and row.tx_power in TX_RANGE else DEFAULT_TX_POWER
        advert = transmitters[row.transmitter].advert(row.time, tx)
        agg = aggregators[row.receiver]
        # an EBID advert carries no TX power (agent.schemes.ebid): the backend adds the declared one
        heard_tx = None if advert.scheme is SchemeName.EBID else row.tx_power
        agg.add(advert.scheme, advert.ephemeral_id, row.time, row.rssi, heard_tx, advert.metadata)
        key = (row.receiver, row.transmitter)
        heard[key] = heard.get(key, 0) + 1
        if len(agg) >= FLUSH_EVERY:
            stores[row.receiver].flush(agg)
        if progress is not None and n % 50_000 == 0:
            progress(0.8 * n / len(trace.rows))
    for name, agg in aggregators.items():
        stores[name].flush(agg)
    return heard


def _decide(
    store: Store,
    rx_name: str,
    tx_name: str,
    verified: VerifiedExport,
    settings: ReplaySettings,
    risk: RiskSettings,
    now: float,
    retention: int,
    truth: dict[tuple[str, str], PairTruth],
    heard: dict[tuple[str, str], int],
) -> tuple[PairResult, tuple[KeyMatch, ...]]:
    """One receiver processes one positive's signed list, as on sync: its decision and its key matches."""
    outcome = process_list(
        store,
        settings.scheme,
        verified.keys,
        verified.export_sha256.hex(),
        f"replay:{tx_name}",
        now,
        risk,
        settings.receiver_correction,
        retention,
    )
    index = SightingIndex(store.windows(scheme=settings.scheme, since=now - retention * DAY))
    matched = tuple(match_keys(settings.scheme, verified.keys, index, now))
    pair_truth = truth.get((rx_name, tx_name))
    days = pair_truth.close_minutes if pair_truth else {}
    pair = PairResult(
        receiver=rx_name,
        transmitter=tx_name,
        true_contact=bool(pair_truth and pair_truth.contact(settings.contact_minutes)),
        close_minutes=round(max(days.values(), default=0.0), 2),
        notified=outcome.notify,
        score=best_score(outcome.assessment),
        heard=heard.get((rx_name, tx_name), 0),
    )
    return pair, matched


def summary(result: ReplayResult) -> dict[str, object]:
    """The figures ``--json`` writes: overall and per pair (names only, never an ID or key)."""
    c = result.confusion
    return {
        "scheme": result.scheme,
        "rows": result.rows,
        "seconds": result.seconds,
        "rows_per_second": round(result.rows / result.seconds) if result.seconds else None,
        "true_contacts": c.true_positives + c.false_negatives,
        "notified": c.true_positives + c.false_positives,
        "precision": round(c.precision, 3),
        "recall": round(c.recall, 3),
        "f1": round(c.f1, 3),
        "confusion": {"tp": c.true_positives, "fp": c.false_positives, "fn": c.false_negatives, "tn": c.true_negatives},
        "pairs": [
            {
                "receiver": p.receiver,
                "transmitter": p.transmitter,
                "true_contact": p.true_contact,
                "close_minutes": p.close_minutes,
                "notified": p.notified,
                "score": p.score,
                "heard": p.heard,
            }
            for p in result.pairs
        ],
    }

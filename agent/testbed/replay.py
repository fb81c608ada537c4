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

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from agent.ble.scanner import RSSI_RANGE, TX_RANGE
from agent.clock import DAY, day_of
from agent.exposure import match_keys, process_list
from agent.matching import KeyMatch, SightingIndex
from agent.protocol.export import SignatureInfo, VerifiedExport, build_export, verify_export
from agent.risk import RiskSettings
from agent.schemes import dp3t, gaen
from agent.schemes.base import Broadcast, DecodedAdvert, Scheme, SchemeName
from agent.schemes.decoder import decode_service_data
from agent.schemes.published import DP3T_KEY_LEN, GAEN_KEY_LEN, PublishedKey
from agent.store import SightingAggregator, Store
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
class ReplayResult:
    scheme: str
    rows: int
    seconds: float
    pairs: tuple[PairResult, ...]
    matches: dict[tuple[str, str], tuple[KeyMatch, ...]]  # what the sweep re-scores
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
            raise ReplayError(f"replay scores {scheme} lists on the device only for dp3t and gaen")

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
            signer = ec.generate_private_key(ec.SECP256R1())
            truth = ground_truth(trace.rows, settings.contact_distance_m)
            pairs = []
            matches: dict[tuple[str, str], tuple[KeyMatch, ...]] = {}
            for tx_name in sorted(positives):
                verified = _signed_list(transmitters[tx_name].published(), settings.scheme, now, signer)
                for rx_name in receivers:
                    if rx_name == tx_name:
                        continue
                    pair, matched = _decide(
                        stores[rx_name], rx_name, tx_name, verified, settings, risk, now, retention, truth, heard
                    )
                    matches[(rx_name, tx_name)] = matched
                    pairs.append(pair)
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
        matches=matches,
        risk=risk,
    )


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
        agg.add(advert.scheme, advert.ephemeral_id, row.time, row.rssi, row.tx_power, advert.metadata)
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
        score=max((float(d.score) for d in outcome.assessment.days), default=0.0) if outcome.assessment else 0.0,
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

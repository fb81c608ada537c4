"""Threshold sweep and fit: which SwissCovid settings would have notified whom, over a replayed trace.

Pure: it takes what replay kept per pair (the sighting windows of the transmitter's published keys in
the receiver's store; for EBID the exposures the backend holds) and re-scores them with
:func:`agent.testbed.replay.assess_pair` — the scoring that decides on the real path, the device's or the
backend's — under each candidate setting. Exposure windows do not depend on the model, but the model
does the bucketing, so each (thresholds, weights) candidate is one assessment per pair; the notify
threshold is then only a comparison with each pair's best daily score.

Over-fitting guard: the fit picks the setting on one part and the figures that are reported come from the
rest: another trace (``--held-back``, e.g. another seed's run), or else the other half of the pairs, split
by a hash of their names (stable, independent of the data).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.risk import RiskSettings, SwissCovidModel
from agent.testbed.replay import Confusion, PairEvidence, PairResult, assess_pair, best_score

LOWER_THRESHOLDS_DB = tuple(range(36, 70, 3))
UPPER_GAPS_DB = (3, 6, 9, 12)
MIDDLE_WEIGHTS = (0.0, 0.5, 1.0)
NOTIFY_MINUTES = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0)


@dataclass(frozen=True)
class Candidate:
    thresholds_db: tuple[float, float]
    weights: tuple[float, float, float]
    notify_at: float

    def model(self) -> SwissCovidModel:
        return SwissCovidModel(self.thresholds_db, self.weights, self.notify_at)


@dataclass(frozen=True)
class SweepPoint:
    candidate: Candidate
    confusion: Confusion


def candidates_grid() -> list[tuple[tuple[float, float], tuple[float, float, float]]]:
    return [
        ((float(t0), float(t0 + gap)), (1.0, w, 0.0))
        for t0, gap, w in itertools.product(LOWER_THRESHOLDS_DB, UPPER_GAPS_DB, MIDDLE_WEIGHTS)
    ]


def _confusion(truth: Sequence[bool], notified: Iterable[bool]) -> Confusion:
    tp = fp = fn = tn = 0
    for t, n in zip(truth, notified, strict=True):
        if t and n:
            tp += 1
        elif n:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, fn, tn)


def _scores(
    pairs: Sequence[PairResult],
    evidence: dict[tuple[str, str], PairEvidence],
    settings: RiskSettings,
    receiver_correction: float,
) -> list[float]:
    """Each pair's best daily score under ``settings`` (0 for a pair nothing of whose was heard)."""
    none = PairEvidence()
    return [
        best_score(assess_pair(evidence.get((p.receiver, p.transmitter), none), settings, receiver_correction))
        for p in pairs
    ]


def evaluate(
    candidate: Candidate,
    pairs: Sequence[PairResult],
    evidence: dict[tuple[str, str], PairEvidence],
    base: RiskSettings,
    receiver_correction: float,
) -> Confusion:
    scores = _scores(pairs, evidence, RiskSettings(candidate.model(), base.windows), receiver_correction)
    return _confusion([p.true_contact for p in pairs], (s >= candidate.notify_at for s in scores))


def sweep(
    pairs: Sequence[PairResult],
    evidence: dict[tuple[str, str], PairEvidence],
    base: RiskSettings,
    receiver_correction: float,
) -> list[SweepPoint]:
    """Every candidate of the grid over ``pairs``: who it notifies, against their ground truth."""
    truth = [p.true_contact for p in pairs]
    points = []
    for thresholds, weights in candidates_grid():
        settings = RiskSettings(SwissCovidModel(thresholds, weights), base.windows)
        scores = _scores(pairs, evidence, settings, receiver_correction)
        for notify_at in NOTIFY_MINUTES:
            points.append(
                SweepPoint(
                    Candidate(thresholds, weights, notify_at), _confusion(truth, (s >= notify_at for s in scores))
                )
            )
    return points


def split(pairs: Sequence[PairResult]) -> tuple[list[PairResult], list[PairResult]]:
    """(fit half, held-back half), by the first byte of SHA-256 of 'receiver|transmitter'."""
    fit, held = [], []
    for p in pairs:
        h = hashlib.sha256(f"{p.receiver}|{p.transmitter}".encode()).digest()[0]
        (fit if h % 2 == 0 else held).append(p)
    return fit, held


def pr_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The best precision at each recall reached (the precision/recall curve)."""
    best: dict[float, SweepPoint] = {}
    for pt in points:
        r = round(pt.confusion.recall, 6)
        if r not in best or pt.confusion.precision > best[r].confusion.precision:
            best[r] = pt
    return [best[r] for r in sorted(best)]


def fit(points: Sequence[SweepPoint], target_recall: float) -> SweepPoint | None:
    """Best precision among the settings with recall >= target (ties: higher recall, then the setting
    nearest SwissCovid's 15 weighted minutes); None when no setting reaches the target."""
    ok = [p for p in points if p.confusion.recall >= target_recall]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.confusion.precision, p.confusion.recall, -abs(p.candidate.notify_at - 15.0)))


def risk_table(candidate: Candidate, scan_interval_seconds: int | None = None) -> str:
    """The ``[risk]`` table for the agent's config file."""
    t0, t1 = candidate.thresholds_db
    lines = [
        "[risk]",
        'model = "swisscovid"',
        "",
        "[risk.swisscovid]",
        f"attenuation_thresholds_db = [{t0:g}, {t1:g}]",
        f"weights = [{', '.join(f'{w:g}' for w in candidate.weights)}]",
        f"notify_at_weighted_minutes = {candidate.notify_at:g}",
    ]
    if scan_interval_seconds is not None:
        lines += ["", "[risk.exposure_windows]", f"scan_interval_seconds = {scan_interval_seconds}"]
    return "\n".join(lines) + "\n"

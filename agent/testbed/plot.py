"""Pictures of the test-bed's figures (matplotlib, the ``plot`` extra): imported only when drawing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.clock import DAY
from agent.risk import RiskSettings
from agent.testbed.replay import PairEvidence, ReplayResult, assess_pair, attenuations
from agent.testbed.sweep import SweepPoint
from agent.testbed.trace import Trace


def _pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot on the file-only backend, or None without the plot extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def pr_curve(points: Sequence[SweepPoint], front: Sequence[SweepPoint], chosen: SweepPoint | None, path: Path) -> bool:
    """Every swept setting as a dot, the best-precision front as a line, the fitted one ringed. False
    without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        [p.confusion.recall for p in points], [p.confusion.precision for p in points], s=8, color="tab:grey", alpha=0.4
    )
    ax.plot([p.confusion.recall for p in front], [p.confusion.precision for p in front], "-o", color="tab:blue", ms=4)
    if chosen is not None:
        ax.scatter([chosen.confusion.recall], [chosen.confusion.precision], s=160, facecolors="none", edgecolors="red")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("SwissCovid thresholds, weights and notify minutes swept")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _crossing_series(
    evidence: PairEvidence, settings: RiskSettings, receiver_correction: float, step: int = 300
) -> tuple[list[float], list[float]]:
    """The pair's weighted minutes of the day so far, every ``step`` seconds, scored by the scoring that
    decides the pair (the device's, or the backend's for EBID) on what was heard up to then (a prefix at
    a time: slow, but exact)."""
    starts = sorted({t for t, _ in attenuations(evidence, receiver_correction)})
    if not starts:
        return [], []
    times, scores = [], []
    t = starts[0]
    while t <= starts[-1] + step:
        a = assess_pair(evidence, settings, receiver_correction, until=t)
        day = int(t // DAY)
        scores.append(next((float(d.score) for d in a.days if d.day == day), 0.0) if a else 0.0)
        times.append(t)
        t += step
    return times, scores


def pair_timeline(
    trace: Trace,
    result: ReplayResult,
    receiver_correction: float,
    contact_distance_m: float,
    path: Path,
    title: str,
) -> bool:
    """Per pair (receiver, positive transmitter), over the trace's time: the distance with the close-contact
    time shaded, the attenuation measured (per sighting window; for EBID what the positive heard and
    reported), and the weighted minutes of the day accumulating against the notify threshold, with the
    moment it is crossed. False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    pairs = [p for p in result.pairs if p.heard or p.true_contact]
    if not pairs:
        pairs = list(result.pairs)[:1]
    distances: dict[frozenset[str], list[tuple[float, float]]] = {}
    for r in trace.rows:
        if r.distance_m is not None:
            distances.setdefault(frozenset((r.receiver, r.transmitter)), []).append((r.time, r.distance_m))
    model = result.risk.model
    threshold = getattr(model, "notify_at_weighted_minutes", None)
    t0 = trace.span[0]
    fig, axes = plt.subplots(len(pairs), 1, figsize=(9, 2.2 * len(pairs) + 0.6), sharex=True, squeeze=False)

    def hours(ts: Sequence[float]) -> list[float]:
        return [(t - t0) / 3600 for t in ts]

    for ax, p in zip(axes[:, 0], pairs, strict=True):
        series = sorted(distances.get(frozenset((p.receiver, p.transmitter)), []))
        if series:
            ts, ds = zip(*series, strict=True)
            ax.plot(hours(ts), ds, color="tab:grey", lw=1, label="distance (m)")
            close = [d <= contact_distance_m for d in ds]
            ax.fill_between(hours(ts), 0, max(ds), where=close, color="tab:orange", alpha=0.25, step="post", lw=0)
        ax.set_ylabel("m")
        ax.set_ylim(0, min(15.0, max((d for _, d in series), default=1.0) * 1.05))  # away = off the top
        att = ax.twinx()
        evidence = result.evidence.get((p.receiver, p.transmitter), PairEvidence())
        measured = attenuations(evidence, receiver_correction)
        if measured:
            att.scatter(
                hours([t for t, _ in measured]),
                [a for _, a in measured],
                s=4,
                color="tab:blue",
                label="attenuation (dB)",
            )
        att.set_ylabel("dB", color="tab:blue")
        score = ax.twinx()
        score.spines["right"].set_position(("axes", 1.08))
        times, scores = _crossing_series(evidence, result.risk, receiver_correction)
        score.plot(hours(times), scores, color="tab:red", lw=1.5, label="weighted minutes today")
        if threshold is not None:
            score.axhline(threshold, color="tab:red", ls=":", lw=1)
            crossed = next((t for t, s in zip(times, scores, strict=True) if s >= threshold), None)
            if crossed is not None and p.notified:
                ax.axvline((crossed - t0) / 3600, color="tab:red", lw=2)
        score.set_ylabel("weighted min", color="tab:red")
        truth = "close contact" if p.true_contact else "not a contact"
        verdict = "NOTIFIED" if p.notified else "not notified"
        ax.set_title(f"{p.receiver} <- {p.transmitter} (positive): {truth}, {verdict}", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("hours from the trace's start")
    fig.suptitle(title + " — shaded: within the contact distance; red line: threshold crossed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

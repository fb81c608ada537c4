"""Reading an LED's recorded levels back as the signal it showed: what a wearer's eye does.

The recorded levels (time, on) are sampled at 20 Hz over a window and compared with each signal's ideal
pattern at every phase (in 50 ms steps); the best match wins if at least ``AGREEMENT`` of the samples agree.
A loaded CI machine wakes the LED task late by tens of milliseconds, which moves edges but never turns one
pattern into another: they differ in whole rhythms, not in a few samples."""

from __future__ import annotations

import bisect

from agent.feedback import Attention, Shown, Signal, level_at, pattern_for

STEP = 0.05
AGREEMENT = 0.85
ALL_SHOWN = [Shown(s) for s in Signal if s is not Signal.NEEDS_ATTENTION] + [
    Shown(Signal.NEEDS_ATTENTION, a) for a in Attention
]


def level(history: list[tuple[float, bool]], t: float) -> bool:
    """The level last set at or before ``t`` (dark before the first)."""
    i = bisect.bisect_right([at for at, _ in history], t)
    return history[i - 1][1] if i else False


def shown_by(history: list[tuple[float, bool]], start: float, seconds: float) -> tuple[Shown | None, float]:
    """The signal the LED showed from ``start`` for ``seconds`` (None if nothing agrees well), and how well."""
    samples = [level(history, start + i * STEP) for i in range(int(seconds / STEP))]
    best: tuple[Shown | None, float] = (None, 0.0)
    for shown in ALL_SHOWN:
        pattern = pattern_for(shown)
        phases = round(sum(s for _, s in pattern) / STEP)
        ideal = [level_at(pattern, i * STEP + STEP / 2)[0] for i in range(phases + len(samples))]
        for phase in range(phases):
            agree = sum(a == b for a, b in zip(ideal[phase:], samples, strict=False)) / len(samples)
            if agree > best[1]:
                best = (shown, agree)
    return best if best[1] >= AGREEMENT else (None, best[1])

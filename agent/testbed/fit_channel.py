"""Fitting the simulator's channel to published measurements, and saying how well it fits.

The model (agent/sim/channel.py) for the RSSI of one advert, receiver r hearing sender s at distance d::

    RSSI = A - 10·n·log10(d) - loss(carriage of r) - loss(carriage of s) + o_dir + S_step + F

``A`` is the RSSI at 1 m hand to hand, ``n`` the path-loss exponent, ``loss`` 0 in the hand and one value
each for pocket and backpack, ``o_dir`` the offset of one direction of one phone pair (sender's TX and
receiver's RX together: a level per phone pair, zero for the most common pair, plus ± an asymmetry),
``S_step`` the shadowing of one standing position (one distance step of one file and direction, ~1 minute,
normal), ``F`` the fast fading of one advert (normal).

Fit: ordinary least squares on the step medians (each step weighs the same, however many adverts it got;
medians, because a step's adverts are skewed by deep fades), then the shadowing sigma is the spread of the
step medians' residuals and the fading sigma the pooled 10-90 % spread of adverts around their step's
median, as a normal's sigma. Device spread: the RMS of the direction offsets.

Held back: the fit uses every other distance step (0.2, 0.6, 1.0, … m); the others (0.4, 0.8, … m) only
check it. Goodness of fit per distance: the median and 90th percentile of the data's RSSI against the
model's, simulated for the same files, directions and number of adverts (MODEL_DRAWS shadowing draws
per step, so the figures are the model's and not one draw's luck).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.testbed.datasets import Measurement

NORMAL_P90 = 1.2816  # the 90th percentile of the standard normal
MODEL_DRAWS = 40  # shadowing draws per step when simulating the model (its spread, not one draw's luck)
PAIR_LOSSES = {  # carriage pair -> (pockets, backpacks) in the link
    "HH": (0, 0),
    "HP": (1, 0),
    "HB": (0, 1),
    "PP": (2, 0),
    "PB": (1, 1),
    "BB": (0, 2),
}


@dataclass(frozen=True)
class ChannelFit:
    rssi_at_1m_dbm: float
    path_loss_exponent: float
    pocket_loss_db: float
    backpack_loss_db: float
    shadowing_sigma_db: float
    fading_sigma_db: float
    device_sigma_db: float
    offsets: dict[str, float]  # per direction "file:receiver"
    steps: int
    adverts: int


@dataclass(frozen=True)
class BinFit:
    distance_m: float
    adverts: int
    data_median: float
    model_median: float
    data_p90: float
    model_p90: float

    @property
    def median_error(self) -> float:
        return self.model_median - self.data_median

    @property
    def p90_error(self) -> float:
        return self.model_p90 - self.data_p90


def _steps(measurements: Sequence[Measurement]) -> dict[tuple[str, str, float], list[int]]:
    steps: dict[tuple[str, str, float], list[int]] = defaultdict(list)
    for m in measurements:
        if m.carriage in PAIR_LOSSES and m.distance_m > 0:
            steps[(m.source, m.receiver, m.distance_m)].append(m.rssi)
    return steps


def held_back(distance_m: float, distances: Sequence[float]) -> bool:
    """Every other distance step, in order of distance, is held back from the fit."""
    return sorted(set(distances)).index(distance_m) % 2 == 1


def split(measurements: Sequence[Measurement]) -> tuple[list[Measurement], list[Measurement]]:
    distances = sorted({m.distance_m for m in measurements})
    fit, held = [], []
    for m in measurements:
        (held if held_back(m.distance_m, distances) else fit).append(m)
    return fit, held


def _direction(source: str, receiver: str) -> str:
    return f"{source}:{receiver}"


def fit_channel(measurements: Sequence[Measurement]) -> ChannelFit:
    steps = _steps(measurements)
    if len(steps) < 6:
        raise ValueError("too few distance steps to fit a channel (need the two-people files)")
    directions = sorted({_direction(s, r) for s, r, _ in steps})
    by_source: dict[str, list[str]] = defaultdict(list)
    for d in directions:
        by_source[d.split(":")[0]].append(d)
    # one free offset per source file with two directions: +delta for the first, -delta for the second
    free = sorted(s for s, ds in by_source.items() if len(ds) == 2)
    # the phones of a file: files with other phones than the most common pair get that pair's own level
    phones = {s: frozenset(d.split(":", 1)[1].split("/", 1)[1] for d in ds) for s, ds in by_source.items()}
    common = max(set(phones.values()), key=list(phones.values()).count)
    others = sorted({p for p in phones.values() if p != common}, key=sorted)
    rows, y = [], []
    for (source, receiver, dist), values in steps.items():
        pockets, backpacks = PAIR_LOSSES[source.removeprefix("RSS_human")]
        offset = [0.0] * len(free)
        if source in free:
            sign = 1.0 if by_source[source].index(_direction(source, receiver)) == 0 else -1.0
            offset[free.index(source)] = sign
        level = [1.0 if phones[source] == o else 0.0 for o in others]
        rows.append([1.0, -10.0 * math.log10(dist), -pockets, -backpacks, *offset, *level])
        y.append(float(np.median(values)))
    x = np.array(rows)
    coef, *_ = np.linalg.lstsq(x, np.array(y), rcond=None)
    residuals = np.array(y) - x @ coef
    within = np.array([v - np.median(vals) for vals in steps.values() for v in vals])
    offsets = {}
    for i, source in enumerate(free):
        first, second = by_source[source]
        level = sum(float(coef[4 + len(free) + j]) for j, o in enumerate(others) if phones[source] == o)
        offsets[first], offsets[second] = level + float(coef[4 + i]), level - float(coef[4 + i])
    return ChannelFit(
        rssi_at_1m_dbm=float(coef[0]),
        path_loss_exponent=float(coef[1]),
        pocket_loss_db=float(coef[2]),
        backpack_loss_db=float(coef[3]),
        shadowing_sigma_db=float(np.sqrt(np.sum(residuals**2) / max(1, len(y) - x.shape[1]))),
        fading_sigma_db=float((np.percentile(within, 90) - np.percentile(within, 10)) / (2 * NORMAL_P90)),
        device_sigma_db=float(np.sqrt(np.mean([o**2 for o in offsets.values()]))) if offsets else 0.0,
        offsets=offsets,
        steps=len(steps),
        adverts=sum(len(v) for v in steps.values()),
    )


def model_mean(fit: ChannelFit, source: str, receiver: str, distance_m: float) -> float:
    pockets, backpacks = PAIR_LOSSES[source.removeprefix("RSS_human")]
    return (
        fit.rssi_at_1m_dbm
        - 10 * fit.path_loss_exponent * math.log10(distance_m)
        - pockets * fit.pocket_loss_db
        - backpacks * fit.backpack_loss_db
        + fit.offsets.get(_direction(source, receiver), 0.0)
    )


def goodness_of_fit(fit: ChannelFit, measurements: Sequence[Measurement], seed: int = 1) -> list[BinFit]:
    """Per distance: data's median and 90th percentile of RSSI against the model's, the model simulated
    with one shadowing draw per step and one fading draw per advert, for the same steps and adverts."""
    rng = np.random.default_rng(seed)
    data: dict[float, list[float]] = defaultdict(list)
    model: dict[float, list[float]] = defaultdict(list)
    for (source, receiver, dist), values in sorted(_steps(measurements).items()):
        data[dist].extend(values)
        for _ in range(MODEL_DRAWS):
            mean = model_mean(fit, source, receiver, dist) + rng.normal(0.0, fit.shadowing_sigma_db)
            model[dist].extend(np.round(mean + rng.normal(0.0, fit.fading_sigma_db, len(values))))
    return [
        BinFit(
            d,
            len(data[d]),
            float(np.median(data[d])),
            float(np.median(model[d])),
            float(np.percentile(data[d], 90)),
            float(np.percentile(model[d], 90)),
        )
        for d in sorted(data)
    ]

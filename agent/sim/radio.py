"""The simulated air: where adapters are, how loud an advert arrives, and how often one is sent.

Pure functions, deterministic given a seeded ``random.Random``, so a test-bed run can be replayed and the
radio model can be tested without a bus.

Path loss is the log-distance model: ``RSSI = TX - L(1 m) - 10·n·log10(d) + N(0, sigma)``. With the
defaults (n = 2, L(1 m) = 41 dB, roughly free space at 2.4 GHz) an advert sent at 0 dBm arrives at about
-41 dBm at 1 m, -61 dBm at 10 m and falls under the -100 dBm cut-off near 900 m; indoor scenarios raise n
to 2.5-3.5. Attenuation as the risk model sees it (TX - RSSI) is then L(1 m) + 10·n·log10(d).

Advertising intervals against the air tick: the simulator samples the air once per tick (real time, e.g.
200 ms). Each advert keeps the simulated time of its next advertising event (interval plus the 0-10 ms
``advDelay`` of the Core spec). A tick covering simulated time (t0, t1] counts every event that falls in
it, logs that count, and delivers **one** report per receiver if the count is at least one. Without
acceleration and with an interval above the tick (the kernel's default 1.28 s) receivers see about one
report per interval, as on air. Under acceleration a tick spans many intervals: the air log still counts
every event, but each receiver gets one report per tick — the same as a real scanner whose host merges
duplicate reports between D-Bus updates, and all an aggregating store needs.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

ADV_DELAY_MAX_S = 0.010
RSSI_MIN = -127
RSSI_MAX = 20


@dataclass(frozen=True)
class RadioParams:
    """The log-distance channel; the fields after ``min_distance_m`` are the body and device effects of
    the fitted channel (agent/sim/channel.py), all zero in the ideal one. ``noise_sigma_db`` is the fast
    fading drawn per advert."""

    path_loss_exponent: float = 2.0
    loss_at_1m_db: float = 41.0
    noise_sigma_db: float = 3.0
    cutoff_rssi: float = -100.0
    min_distance_m: float = 0.1
    shadowing_sigma_db: float = 0.0  # log-normal shadowing per pair, redrawn every shadowing_seconds
    shadowing_seconds: float = 600.0
    pocket_loss_db: float = 0.0  # extra loss of a phone in a pocket (vs in the hand), per end of the link
    backpack_loss_db: float = 0.0
    carriage_seconds: float = 1800.0  # how long a person keeps the phone in one place (hand, pocket, bag)
    device_sigma_db: float = 0.0  # spread of per-device TX + RX offsets left after calibration
    # dual slope: beyond break_distance_m (0 = never) the loss grows with far_exponent instead
    break_distance_m: float = 0.0
    far_exponent: float = 2.0

    def __post_init__(self) -> None:
        if self.path_loss_exponent <= 0:
            raise ValueError("radio.path_loss_exponent must be positive")
        for name in ("noise_sigma_db", "shadowing_sigma_db", "pocket_loss_db", "backpack_loss_db", "device_sigma_db"):
            if getattr(self, name) < 0:
                raise ValueError(f"radio.{name} must not be negative")
        if self.min_distance_m <= 0:
            raise ValueError("radio.min_distance_m must be positive")
        if self.shadowing_seconds <= 0 or self.carriage_seconds <= 0:
            raise ValueError("radio.shadowing_seconds and radio.carriage_seconds must be positive")

    @property
    def ideal(self) -> bool:
        """Only distance and per-advert noise: no body, carriage, shadowing or device spread."""
        return not (self.shadowing_sigma_db or self.pocket_loss_db or self.backpack_loss_db or self.device_sigma_db)


@dataclass(frozen=True)
class Waypoint:
    """Where an adapter is at simulated time ``t`` (unix seconds); positions in metres."""

    t: float
    x: float
    y: float


@dataclass(frozen=True)
class Track:
    """A piecewise-linear path; before the first and after the last waypoint the adapter stands still."""

    points: tuple[Waypoint, ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a track needs at least one waypoint")
        if any(b.t < a.t for a, b in zip(self.points, self.points[1:], strict=False)):
            raise ValueError("track waypoints must be in time order")

    @classmethod
    def fixed(cls, x: float, y: float) -> Track:
        return cls((Waypoint(0.0, x, y),))

    def position_at(self, t: float) -> tuple[float, float]:
        pts = self.points
        if t <= pts[0].t:
            return pts[0].x, pts[0].y
        for a, b in itertools.pairwise(pts):
            if t <= b.t:
                span = b.t - a.t
                f = 0.0 if span <= 0 else (t - a.t) / span
                return a.x + f * (b.x - a.x), a.y + f * (b.y - a.y)
        return pts[-1].x, pts[-1].y


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def path_loss_db(d: float, params: RadioParams) -> float:
    d = max(d, params.min_distance_m)
    brk = params.break_distance_m
    if brk and d > brk:
        near = 10.0 * params.path_loss_exponent * math.log10(brk)
        return params.loss_at_1m_db + near + 10.0 * params.far_exponent * math.log10(d / brk)
    return params.loss_at_1m_db + 10.0 * params.path_loss_exponent * math.log10(d)


def mean_rssi(tx_power: float, d: float, params: RadioParams) -> float:
    return tx_power - path_loss_db(d, params)


def sample_rssi(tx_power: float, d: float, params: RadioParams, rng: random.Random) -> int | None:
    """One received signal strength in dBm, or None when the advert is lost under the cut-off."""
    value = mean_rssi(tx_power, d, params)
    if params.noise_sigma_db:
        value += rng.gauss(0.0, params.noise_sigma_db)
    if value < params.cutoff_rssi:
        return None
    return max(RSSI_MIN, min(RSSI_MAX, round(value)))


def max_range_m(tx_power: float, params: RadioParams) -> float:
    """Distance at which the mean RSSI reaches the cut-off (noise can carry an advert a little further)."""
    budget = tx_power - params.loss_at_1m_db - params.cutoff_rssi
    near = 10.0 ** (budget / (10.0 * params.path_loss_exponent))
    brk = params.break_distance_m
    if not brk or near <= brk:
        return near
    left = budget - 10.0 * params.path_loss_exponent * math.log10(brk)
    return brk * 10.0 ** (left / (10.0 * params.far_exponent))


def advertising_events(next_event: float, t1: float, interval_s: float, rng: random.Random) -> tuple[int, float]:
    """Events of one advert up to simulated time ``t1``: (how many, when the next one is due).

    Each event is followed by ``interval + advDelay``; the random delay is drawn once per call, which keeps
    the cost independent of how many intervals a tick spans.
    """
    if next_event > t1:
        return 0, next_event
    step = interval_s + rng.uniform(0.0, ADV_DELAY_MAX_S)
    count = 1 + int((t1 - next_event) // step)
    return count, next_event + count * step

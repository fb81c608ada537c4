"""Ground truth and efficacy: who really was a close contact of a positive person, and how the
notifications compare (precision and recall)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from agent.clock import DAY
from agent.testbed.scenario import Scenario

SAMPLE_SECONDS = 60


@dataclass(frozen=True)
class Contact:
    person: str
    positive: str
    day: int
    minutes: float


def close_contacts(
    scenario: Scenario,
    seed: int = 0,
    until: float | None = None,
    since: float | None = None,
) -> list[Contact]:
    """People within ``contact_distance_m`` of a positive person for ≥ ``contact_minutes`` on one day,
    during that person's infectious window (onset days before, up to the positive test)."""
    end = scenario.end if until is None else min(until, scenario.end)
    minutes: dict[tuple[str, str, int], float] = defaultdict(float)
    for positive in scenario.positives:
        source = scenario.person(positive.person)
        window_start = scenario.start + (positive.day - positive.onset_days_before) * DAY
        window_end = min(end, scenario.start + positive.day * DAY + positive.at)
        t = max(scenario.start, window_start, since if since is not None else scenario.start)
        while t < window_end:
            here = scenario.position(source, t, seed)
            if here is not None:
                for other in scenario.people:
                    if other.name == source.name:
                        continue
                    there = scenario.position(other, t, seed)
                    if there is not None and math.dist(here, there) <= scenario.contact_distance_m:
                        day = int((t - scenario.start) // DAY)
                        minutes[(other.name, source.name, day)] += SAMPLE_SECONDS / 60
            t += SAMPLE_SECONDS
    return sorted(
        (Contact(p, s, d, m) for (p, s, d), m in minutes.items() if m >= scenario.contact_minutes),
        key=lambda c: (c.person, c.day),
    )


@dataclass(frozen=True)
class Efficacy:
    true_contacts: int
    notified: int
    true_positives: int
    recall: float
    precision: float


def efficacy(truth: set[str], notified: set[str]) -> Efficacy:
    """Recall = notified true contacts / true contacts; precision = notified true contacts / notified.
    With nothing to find (or nothing notified) the ratio is 1.0: no misses (no false alarms)."""
    hit = len(truth & notified)
    return Efficacy(
        true_contacts=len(truth),
        notified=len(notified),
        true_positives=hit,
        recall=hit / len(truth) if truth else 1.0,
        precision=hit / len(notified) if notified else 1.0,
    )

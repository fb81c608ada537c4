"""Workplace scenarios: places, people and their schedules over simulated days, from a TOML file.

A scenario is the ground truth the test-bed measures the agents against, so it is plain data with a pure
``position(person, t)``: the same file and seed always give the same movements.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.clock import DAY


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Place:
    name: str
    x: float
    y: float
    radius: float = 0.0  # people at this place are spread within this radius (a meeting table, a canteen)


@dataclass(frozen=True)
class Stop:
    at: int  # seconds after midnight
    place: str | None  # None = away (home, out of range of everyone)


@dataclass(frozen=True)
class Person:
    name: str
    schedule: tuple[Stop, ...]
    days: tuple[int, ...] | None = None  # days (0-based) this person comes in; None = every day


@dataclass(frozen=True)
class Positive:
    person: str
    day: int
    at: int  # seconds after midnight of that day: when the test comes back positive
    onset_days_before: int = 2


CHANNELS = ("fitted", "ideal")


@dataclass(frozen=True)
class RadioModel:
    """``channel``: "fitted" (agent/sim/channel.py: body, carriage, shadowing, device spread fitted to field
    measurements; the default) or "ideal" (distance and ``noise_db`` of noise only, for exact tests)."""

    tx_power_at_1m: float = -59.0
    path_loss_exponent: float = 2.0
    noise_db: float = 2.0
    range_m: float = 12.0
    channel: str = "fitted"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start: float  # unix seconds, midnight UTC of day 0
    days: int
    places: dict[str, Place]
    people: tuple[Person, ...]
    positives: tuple[Positive, ...]
    radio: RadioModel = field(default_factory=RadioModel)
    contact_distance_m: float = 2.0
    contact_minutes: float = 15.0

    @property
    def end(self) -> float:
        return self.start + self.days * DAY

    def person(self, name: str) -> Person:
        for p in self.people:
            if p.name == name:
                return p
        raise KeyError(name)

    def position(self, person: Person, t: float, seed: int = 0) -> tuple[float, float] | None:
        """Where ``person`` is at ``t``, or None when away; spread inside a place is stable per person."""
        day, second = divmod(int(t - self.start), DAY)
        if day < 0 or day >= self.days or (person.days is not None and day not in person.days):
            return None
        current: str | None = None
        for stop in person.schedule:
            if stop.at <= second:
                current = stop.place
            else:
                break
        if current is None:
            return None
        place = self.places[current]
        if place.radius <= 0:
            return (place.x, place.y)
        digest = hashlib.sha256(f"{seed}:{person.name}:{place.name}:{day}".encode()).digest()
        angle = int.from_bytes(digest[:4], "big") / 2**32 * 2 * math.pi
        r = place.radius * math.sqrt(int.from_bytes(digest[4:8], "big") / 2**32)
        return (place.x + r * math.cos(angle), place.y + r * math.sin(angle))


def _clock(text: object, where: str) -> int:
    if not isinstance(text, str):
        raise ScenarioError(f'{where}: expected a time like "08:30", got {text!r}')
    try:
        hours, minutes = text.split(":")
        value = int(hours) * 3600 + int(minutes) * 60
    except ValueError:
        raise ScenarioError(f'{where}: expected a time like "08:30", got {text!r}') from None
    if not 0 <= value < DAY:
        raise ScenarioError(f"{where}: {text!r} is not a time of day")
    return value


def load_scenario(path: Path) -> Scenario:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    try:
        return scenario_from_dict(raw)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def scenario_from_dict(raw: dict[str, object]) -> Scenario:
    meta = raw.get("scenario")
    if not isinstance(meta, dict):
        raise ScenarioError("[scenario] table missing")
    try:
        start = datetime.fromisoformat(str(meta["start"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise ScenarioError("scenario.start: expected an ISO date like 2026-03-02") from None
    start = start.replace(tzinfo=start.tzinfo or UTC)
    start_ts = start.timestamp() - start.timestamp() % DAY
    places = {}
    for name, value in dict(raw.get("places", {})).items():  # type: ignore[call-overload]
        if not isinstance(value, dict) or not {"x", "y"} <= set(value):
            raise ScenarioError(f"places.{name}: expected {{ x = …, y = … [, radius = …] }}")
        places[name] = Place(name, float(value["x"]), float(value["y"]), float(value.get("radius", 0.0)))
    people = []
    for i, p in enumerate(raw.get("person", [])):  # type: ignore[union-attr]
        where = f"person[{i}]"
        if not isinstance(p, dict) or "name" not in p or "schedule" not in p:
            raise ScenarioError(f"{where}: needs name and schedule")
        stops = []
        for j, entry in enumerate(p["schedule"]):
            if not (isinstance(entry, list) and len(entry) == 2):
                raise ScenarioError(f'{where}.schedule[{j}]: expected ["HH:MM", "place"]')
            place = entry[1]
            if place != "away" and place not in places:
                raise ScenarioError(f"{where}.schedule[{j}]: unknown place {place!r}")
            stops.append(Stop(_clock(entry[0], f"{where}.schedule[{j}]"), None if place == "away" else place))
        if [s.at for s in stops] != sorted(s.at for s in stops):
            raise ScenarioError(f"{where}.schedule: times must increase")
        days = p.get("days")
        people.append(Person(str(p["name"]), tuple(stops), tuple(int(d) for d in days) if days is not None else None))
    names = [p.name for p in people]
    if len(set(names)) != len(names):
        raise ScenarioError("person: names must be unique")
    positives = []
    for i, pos in enumerate(raw.get("positive", [])):  # type: ignore[union-attr]
        if pos.get("person") not in names:
            raise ScenarioError(f"positive[{i}].person: unknown person {pos.get('person')!r}")
        positives.append(
            Positive(
                pos["person"],
                int(pos.get("day", 0)),
                _clock(pos.get("at", "17:00"), f"positive[{i}].at"),
                int(pos.get("onset_days_before", 2)),
            )
        )
    radio_raw = dict(raw.get("radio", {}))  # type: ignore[call-overload]
    channel = radio_raw.pop("channel", "fitted")
    if channel not in CHANNELS:
        raise ScenarioError(f"radio.channel: {channel!r}: expected one of {', '.join(CHANNELS)}")
    try:
        radio = RadioModel(**{k: float(v) for k, v in radio_raw.items()}, channel=channel)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"radio: {exc}") from None
    days = int(meta.get("days", 1))
    if not 1 <= days <= 30:
        raise ScenarioError("scenario.days: between 1 and 30")
    return Scenario(
        name=str(meta.get("name", "scenario")),
        description=str(meta.get("description", "")),
        start=start_ts,
        days=days,
        places=places,
        people=tuple(people),
        positives=tuple(positives),
        radio=radio,
        contact_distance_m=float(meta.get("contact_distance_m", 2.0)),
        contact_minutes=float(meta.get("contact_minutes", 15.0)),
    )

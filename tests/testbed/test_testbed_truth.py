from pathlib import Path

import pytest

from agent.testbed.scenario import ScenarioError, load_scenario, scenario_from_dict
from agent.testbed.truth import close_contacts, efficacy

OFFICE = Path(__file__).resolve().parents[2] / "hw" / "scenarios" / "office-floor.toml"
DESK = OFFICE.with_name("desk-testbed.toml")


def test_office_floor_ground_truth() -> None:
    scenario = load_scenario(OFFICE)
    contacts = close_contacts(scenario)
    by_person = {(c.person, c.day) for c in contacts}
    assert ("ben", 0) in by_person and ("ben", 1) in by_person  # desk neighbour at 1.6 m
    assert ("chloe", 0) in by_person  # the 45-minute meeting
    assert ("gita", 1) in by_person and ("gita", 0) not in by_person  # only in on day 1
    assert ("dev", 0) in by_person  # lunch at the same table
    assert {c.person for c in contacts}.isdisjoint({"emma", "farid", "hugo", "ana"})
    assert all(c.minutes >= 15 for c in contacts)


def test_desk_testbed_ground_truth() -> None:
    scenario = load_scenario(DESK)
    minutes = {c.person: c.minutes for c in close_contacts(scenario)}
    assert minutes == {"dongle-b": 180.0, "dongle-c": 30.0}  # D's 10-minute visit at 1 m is too short


def test_positions_are_deterministic_and_away_outside_hours() -> None:
    scenario = load_scenario(OFFICE)
    ana = scenario.person("ana")
    at_meeting = scenario.start + 10 * 3600 + 600
    assert scenario.position(ana, at_meeting, seed=3) == scenario.position(ana, at_meeting, seed=3)
    assert scenario.position(ana, at_meeting, seed=3) != scenario.position(ana, at_meeting, seed=4)
    assert scenario.position(ana, scenario.start + 3 * 3600) is None
    assert scenario.position(ana, scenario.start + 9 * 3600) == (0.0, 0.0)
    assert scenario.position(scenario.person("hugo"), scenario.start + 86400 + 10 * 3600) is None


def test_efficacy_ratios() -> None:
    e = efficacy({"ben", "chloe", "dev"}, {"ben", "chloe", "emma"})
    assert (e.true_positives, e.recall, e.precision) == (2, 2 / 3, 2 / 3)
    assert efficacy(set(), set()).recall == 1.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, r"\[scenario\] table missing"),
        ({"scenario": {"start": "yesterday"}}, "scenario.start"),
        (
            {"scenario": {"start": "2026-01-01"}, "person": [{"name": "x", "schedule": [["8:00", "nowhere"]]}]},
            "unknown place 'nowhere'",
        ),
        (
            {
                "scenario": {"start": "2026-01-01"},
                "places": {"p": {"x": 0, "y": 0}},
                "person": [{"name": "x", "schedule": [["25:00", "p"]]}],
            },
            "not a time of day",
        ),
        ({"scenario": {"start": "2026-01-01"}, "positive": [{"person": "nobody"}]}, "unknown person"),
    ],
)
def test_bad_scenarios_name_the_problem(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario_from_dict(raw)

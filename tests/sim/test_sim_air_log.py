"""Air-log analysis: instances, the unlinkability violations, the figures the test-bed reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.sim.air_log import (
    END_CLIENT_GONE,
    END_SERVICE_LOST,
    END_UNREGISTERED,
    AirLogWriter,
    instances,
    is_non_resolvable_private,
    outside_validity,
    read_air_log,
    summarize,
    violations,
)

FD6F = "0000fd6f-0000-1000-8000-00805f9b34fb"


def on(t: float, i: str, addr: str, ident: int) -> dict[str, object]:
    return {"e": "on", "t": t, "i": i, "a": "hci0", "addr": addr, "sd": {FD6F: (bytes([ident]) * 20).hex()}, "tx": None}


def off(t: float, i: str, why: str = END_UNREGISTERED, n: int = 10) -> dict[str, object]:
    return {"e": "off", "t": t, "i": i, "n": n, "rx": n // 2, "why": why}


A1, A2, A3 = "1A:00:00:00:00:01", "2B:00:00:00:00:02", "3C:00:00:00:00:03"


def test_clean_rotation_has_no_violations() -> None:
    records = [on(0, "x.1", A1, 1), off(600, "x.1"), on(600, "x.2", A2, 2), off(1200, "x.2")]
    items = instances(records)
    assert [(i.address, i.on, i.off, i.events) for i in items] == [(A1, 0, 600, 10), (A2, 600, 1200, 10)]
    assert violations(items) == []
    s = summarize(records)
    assert (s.instances, s.adverts_on_air, s.reports_delivered, s.addresses) == (2, 20, 10, 2)


def test_new_id_under_the_old_address_is_a_violation() -> None:
    records = [on(0, "x.1", A1, 1), off(600, "x.1", "data-changed"), on(600, "x.2", A1, 2), off(1200, "x.2")]
    kinds = [v.kind for v in violations(instances(records))]
    assert kinds == ["address-with-several-ids"]


def test_one_id_under_two_addresses_is_a_violation_and_outages_are_marked() -> None:
    rotated = [on(0, "x.1", A1, 1), off(300, "x.1"), on(300, "x.2", A2, 1), off(600, "x.2")]
    (v,) = violations(instances(rotated))
    assert v.kind == "id-with-several-addresses" and not v.after_outage
    crashed = [on(0, "x.1", A1, 1), off(300, "x.1", END_CLIENT_GONE), on(300, "x.2", A2, 1)]
    (v,) = violations(instances(crashed))
    assert v.after_outage


def test_static_or_resolvable_addresses_are_violations() -> None:
    assert is_non_resolvable_private(A1)
    assert not is_non_resolvable_private("DC:A6:32:00:00:01")  # static random: top bits 11
    assert not is_non_resolvable_private("5A:00:00:00:00:01")  # resolvable private: top bits 01
    assert not is_non_resolvable_private("00:00:00:00:00:00")
    assert not is_non_resolvable_private("3F:FF:FF:FF:FF:FF")
    assert not is_non_resolvable_private("zz")
    (v,) = violations(instances([on(0, "x.1", "DC:A6:32:00:00:01", 1)]))
    assert v.kind == "static-address"


def test_a_killed_simulator_closes_open_instances_at_the_next_start() -> None:
    records = [
        {"e": "start", "t": 0, "run": "a"},
        on(1, "a.1", A1, 1),
        {"e": "start", "t": 50, "run": "b"},
        on(51, "b.1", A2, 1),
    ]
    first, second = instances(records)
    assert (first.off, first.ended_by, first.events) == (50, END_SERVICE_LOST, None)
    assert second.off is None
    (v,) = violations([first, second])
    assert v.after_outage
    assert summarize(records).restarts == 1


def test_outside_validity_finds_late_rotations() -> None:
    items = instances([on(0, "x.1", A1, 1), off(610, "x.1"), on(610, "x.2", A2, 2), off(1300, "x.2")])
    windows = {bytes([1]) * 16: (0.0, 600.0), bytes([2]) * 16: (600.0, 1200.0)}

    def window_of(inst):  # type: ignore[no-untyped-def]
        return windows[inst.service_data[0][1][:16]]

    assert outside_validity(items, window_of, tolerance_s=20) == [items[1]]
    assert outside_validity(items, window_of, tolerance_s=200) == []


def test_writer_and_reader_round_trip_and_tolerate_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "air.jsonl"
    w = AirLogWriter(path)
    w.write(on(0, "x.1", A1, 1))
    w.write(off(5, "x.1"))
    w.close()
    with path.open("a") as f:
        f.write('{"e": "on", "t": 6, "i"')  # SIGKILL mid-write
    assert [r["e"] for r in read_air_log(path)] == ["on", "off"]
    path.write_text('{"e":"on"}\nnot json\n{"e":"off","t":1}\n')
    with pytest.raises(ValueError, match=":1: air-log record without"):
        read_air_log(path)
    path.write_text(json.dumps({"e": "on", "t": 1}) + "\nnot json\n" + json.dumps({"e": "off", "t": 2}) + "\n")
    with pytest.raises(ValueError, match=":2: not a JSON"):
        read_air_log(path)

"""A simulated day on an accelerated clock, judged from the air log alone: every random address carries
exactly one ID, every ID exactly one address, a rotation at every ID boundary, never a static address,
and (on a legacy controller that also scans) advertising on after every rotation."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest
from support.bletools import AgentThread, gaen_scheme
from support.polling import eventually

from agent.ble.edge import BleEdge, BleSettings
from agent.clock import DAY as DAY_SECONDS
from agent.clock import AcceleratedClock
from agent.schemes.base import Scheme
from agent.schemes.dp3t import Dp3tScheme, new_key_state
from agent.sim.air_log import AirInstance, ephemeral_id_of, instances, outside_validity, violations
from agent.sim.harness import SimBed

Bed = Callable[..., SimBed]
SPEED = 2880.0  # a day in 30 s
MAX_LATE_REAL_S = 0.25  # how late (in real time) a rotation may come after its boundary
# A GAEN ID lives 600 s, 0.21 s of real time at SPEED: a rotation that comes as late as MAX_LATE_REAL_S
# allows (a loaded CI host) rightly skips the ID that expired meanwhile rather than broadcast it stale. At
# 1x the same lateness is 0.25 s of a 10-minute life and skips nothing, so the skips here are the clock's
# acceleration; more than two in a simulated day would be a fault of ours.
MAX_MISSED = 2


def expected_ids(scheme: Scheme, first: float, last: float) -> list[bytes]:
    """The scheme's IDs from the one live at ``first`` to the one live at ``last``, in order."""
    out = []
    t = first
    while t <= last:
        live = scheme.broadcast_at(t, -8)
        assert live is not None
        out.append(live.ephemeral_id)
        t = live.valid_until
    return out


def is_subsequence(ids: list[bytes], expected: list[bytes]) -> bool:
    """Whether ``ids`` appear in ``expected`` in the same order (some of ``expected`` may be missing)."""
    remaining = iter(expected)
    return all(any(i == e for e in remaining) for i in ids)


def window(scheme: Scheme, inst: AirInstance) -> tuple[float, float] | None:
    live = scheme.broadcast_at(inst.on, -8)
    return (live.valid_from, live.valid_until) if live is not None else None


@pytest.mark.slow
async def test_a_simulated_day_is_unlinkable_on_air(make_bed: Bed) -> None:
    day0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY_SECONDS
    start = day0 + 123.0
    clock = AcceleratedClock(start, SPEED)
    bed = make_bed(
        {
            "tick_seconds": 0.2,
            "adapters": [{"name": "hci0", "legacy": True}, {"name": "hci1", "x": 4.0}],
        },
        clock_spec=clock.spec(),
    )
    schemes: dict[str, Scheme] = {"hci0": gaen_scheme(start), "hci1": Dp3tScheme(new_key_state(start))}
    agents = [
        AgentThread(
            lambda sink, a=adapter: BleEdge(
                BleSettings(advertise_adapter=a, scan_adapters=(a,), tx_power=-8), schemes[a], sink, clock
            )
        ).start()
        for adapter in schemes
    ]
    try:
        await eventually(lambda: clock.now() >= start + DAY_SECONDS, timeout=DAY_SECONDS / SPEED + 10, every=0.5)
        healths = [a.health() for a in agents]
    finally:
        for agent in agents:
            agent.stop()
    bed.sim.stop()

    records = bed.air_records()
    items = instances(records)
    assert violations(items) == []  # one ID per address, one address per ID, no static address
    assert not [r for r in records if r["e"] == "refused"]  # the legacy controller never refused
    for adapter, scheme in schemes.items():
        mine = [i for i in items if i.adapter == adapter]
        ids = [ephemeral_id_of(i) for i in mine]
        expected = expected_ids(scheme, mine[0].on, mine[-1].on)
        assert len(set(ids)) == len(ids) and is_subsequence(ids, expected)  # one instance per ID, in order
        assert len(expected) - len(ids) <= MAX_MISSED  # none missed, bar a loaded host's late wake-up
        assert len(ids) >= {"hci0": 144, "hci1": 96}[adapter]
        assert outside_validity(mine[:-1], lambda i, s=scheme: window(s, i), MAX_LATE_REAL_S * SPEED) == []
        lateness = [i.off - w[1] for i in mine[:-1] if i.off is not None and (w := window(scheme, i))]
        assert statistics.median(lateness) < 0.05 * SPEED  # typically 4 ms of real time
    for agent, h in zip(agents, healths, strict=True):
        assert h.advertiser is not None and h.advertiser.failures == 0 and h.advertiser.rotations >= 96
        assert h.scanners[0].sightings > 0 and len(agent.sightings) >= h.scanners[0].sightings

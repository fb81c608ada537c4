"""Two agents, each on its own adapter, event loop and bus connection, hear each other."""

from __future__ import annotations

from collections.abc import Callable

from support.bletools import AgentThread, ebid_scheme, gaen_scheme
from support.polling import eventually

from agent.ble.edge import BleEdge, BleSettings
from agent.clock import SystemClock
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.sim.harness import SimBed
from agent.sim.radio import RadioParams, mean_rssi

Bed = Callable[..., SimBed]


async def test_two_agents_store_each_others_ids_with_rssi_and_tx_power(make_bed: Bed) -> None:
    make_bed(
        {
            "tick_seconds": 0.1,
            "adapters": [
                {"name": "hci0", "tx_power": -4, "adv_interval_ms": 200},
                {"name": "hci1", "x": 3.0, "tx_power": -8, "adv_interval_ms": 200},
            ],
        }
    )
    clock = SystemClock()
    ebid_a = ebid_scheme(clock.now())
    gaen_b = gaen_scheme(clock.now())
    a = AgentThread(
        lambda sink: BleEdge(
            BleSettings(advertise_adapter="hci0", scan_adapters=("hci0",), tx_power=-4), ebid_a, sink, clock
        )
    ).start()
    b = AgentThread(
        lambda sink: BleEdge(
            BleSettings(advertise_adapter="hci1", scan_adapters=("hci1",), tx_power=-8, include_tx_power=True),
            gaen_b,
            sink,
            clock,
        )
    ).start()
    try:
        await eventually(lambda: len(a.sightings) >= 5 and len(b.sightings) >= 5, timeout=15)
        ha, hb = a.health(), b.health()
    finally:
        a.stop()
        b.stop()
    live_a = ebid_a.broadcast_at(clock.now(), -4)
    assert live_a is not None
    heard_by_b = {s.ephemeral_id for s in b.sightings}
    heard_by_a = {s.ephemeral_id for s in a.sightings}
    assert heard_by_b == {live_a.ephemeral_id}  # B stored A's EBID...
    (tek,) = [k for k in gaen_b.keys if k.covers(gaen.enin(clock.now()))]
    assert heard_by_a <= {gaen.rpi(gaen.rpik(tek.key), gaen.enin(clock.now()) + d) for d in (-1, 0)}  # ...A, B's RPI
    expected = mean_rssi(-4, 3.0, RadioParams())
    for s in b.sightings:
        assert s.scheme is SchemeName.EBID and s.tx_power is None  # no TX power on air in an EBID advert
        assert abs(s.rssi - expected) <= 15 and s.adapter == "hci1"
    for s in a.sightings:
        assert s.scheme is SchemeName.GAEN and s.tx_power == -8  # TX power from BlueZ (tx-power include)
        assert abs(s.rssi - mean_rssi(-8, 3.0, RadioParams())) <= 15
        plain = gaen.encrypt_metadata(gaen.aemk(tek.key), s.ephemeral_id, s.metadata)  # CTR: decrypt = encrypt
        assert gaen.parse_metadata(plain).tx_power == -8  # and inside the encrypted metadata
    assert ha.advertiser and ha.advertiser.advertising and hb.advertiser and hb.advertiser.advertising
    assert [x.scanning for x in ha.adapter_statuses()] == [True]
    assert b.health().scanners[0].sightings == len(b.sightings)  # every decoded sighting reached the sink

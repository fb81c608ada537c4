"""Simulator config files and bluetoothd's parsing of registered advertisements (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbus_fast import Variant

from agent.schemes.base import advertising_data
from agent.sim.advert import AdvertError, matches_or_patterns, parse_advertisement, parse_uuid
from agent.sim.config import SimConfigError, load_sim_config, sim_config_from_dict

FD6F = "0000fd6f-0000-1000-8000-00805f9b34fb"


def test_json_and_toml_configs_load(tmp_path: Path) -> None:
    j = tmp_path / "sim.json"
    j.write_text(json.dumps({"seed": 3, "adapters": [{"name": "hci0"}, {"name": "hci1", "x": 2.5, "legacy": True}]}))
    t = tmp_path / "sim.toml"
    t.write_text(
        'tick_seconds = 0.1\n[radio]\npath_loss_exponent = 2.7\n[[adapters]]\nname = "hci3"\n'
        "track = [[0, 0, 0], [100, 5, 0]]\nexperimental = true\n"
    )
    a = load_sim_config(j)
    assert [x.name for x in a.adapters] == ["hci0", "hci1"]
    assert a.adapters[1].legacy and a.adapters[1].track.position_at(0) == (2.5, 0.0)
    b = load_sim_config(t)
    assert b.tick_seconds == 0.1 and b.radio.path_loss_exponent == 2.7
    assert b.adapters[0].experimental and b.adapters[0].track.position_at(50) == (2.5, 0.0)
    assert b.adapters[0].address == "00:1A:7D:DA:00:03"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"adapters": [{"name": "wlan0"}]}, "adapters[0].name"),
        ({"adapters": [{"name": "hci0", "legacy": "yes"}]}, "adapters[0].legacy"),
        ({"adapters": [{"name": "hci0", "extended": 1}]}, "adapters[0].extended"),
        ({"adapters": [{"name": "hci0", "legacy": True, "extended": True}]}, "adapters[0]: legacy and extended"),
        ({"adapters": [{"name": "hci0", "tx_power": 99}]}, "adapters[0].tx_power"),
        ({"adapters": [{"name": "hci0", "colour": 1}]}, "adapters[0].colour"),
        ({"adapters": [{"name": "hci0"}, {"name": "hci0"}]}, "adapters"),
        ({"radio": {"path_loss_exponent": "2"}}, "radio.path_loss_exponent"),
        ({"tick_seconds": 0}, "tick_seconds"),
        ({"adapters": [{"name": "hci0", "track": [[10, 0, 0], [5, 1, 1]]}]}, "adapters[0].track"),
        ({"speed": 2}, "speed"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(SimConfigError) as err:
        sim_config_from_dict(raw)
    assert str(err.value).startswith(key)


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "sim.json"
    bad.write_text("{not json")
    with pytest.raises(SimConfigError, match="not valid JSON"):
        load_sim_config(bad)
    with pytest.raises(SimConfigError, match="missing"):
        load_sim_config(tmp_path / "missing.json")


def _props(data: bytes = bytes(20), **extra: Variant) -> dict[str, Variant]:
    return {
        "Type": Variant("s", "broadcast"),
        "ServiceUUIDs": Variant("as", [FD6F]),
        "ServiceData": Variant("a{sv}", {FD6F: Variant("ay", data)}),
        **extra,
    }


def test_our_advert_parses_to_the_exact_bytes_bluez_sends() -> None:
    data = bytes(range(20))
    parsed = parse_advertisement(_props(data))
    # bluetoothd adds no Flags to a broadcast advert; the 28 bytes are the UUID list and the service data
    assert parsed.payload == advertising_data(0xFD6F, data)[3:]
    assert len(parsed.payload) == 28
    assert parsed.service_data[0][0].full == FD6F and parsed.service_data[0][1] == data
    assert not parsed.include_tx_power


def test_tx_power_include_fits_our_payload_but_not_a_longer_one() -> None:
    parsed = parse_advertisement(_props(Includes=Variant("as", ["tx-power"])))
    assert parsed.include_tx_power
    with pytest.raises(AdvertError, match="28 fit"):
        parse_advertisement(_props(bytes(21), Includes=Variant("as", ["tx-power"])))


@pytest.mark.parametrize(
    "props",
    [
        {**_props(), "ServiceData": Variant("a{say}", {FD6F: bytes(20)})},  # bluez-peripheral's mistake
        {**_props(), "ServiceData": Variant("a{sv}", {FD6F: Variant("s", "x")})},
        {**_props(), "Type": Variant("s", "beacon")},
        {**_props(), "Discoverable": Variant("b", True)},  # a broadcast advert may not set flags
        {**_props(), "ServiceUUIDs": Variant("as", ["not-a-uuid"])},
        {**_props(), "MinInterval": Variant("u", 500), "MaxInterval": Variant("u", 200)},
        {**_props(), "TxPower": Variant("i", 0)},
        _props(bytes(24)),  # 32 bytes of advertising data
    ],
)
def test_bad_advertisements_are_rejected(props: dict[str, Variant]) -> None:
    with pytest.raises(AdvertError):
        parse_advertisement(props)


def test_uuid_forms() -> None:
    assert parse_uuid("FD6F").full == FD6F and parse_uuid("0xfd6f").wire == b"\x6f\xfd"
    assert parse_uuid(FD6F).wire == b"\x6f\xfd"
    u128 = parse_uuid("12345678-1234-5678-1234-56789abcdef0")
    assert len(u128.wire) == 16 and u128.wire[0] == 0xF0
    with pytest.raises(AdvertError):
        parse_uuid(5)


def test_or_patterns_match_service_data_of_our_uuid_only() -> None:
    payload = parse_advertisement(_props()).payload
    assert matches_or_patterns(payload, ((0, 0x16, b"\x6f\xfd"),))
    assert not matches_or_patterns(payload, ((0, 0x16, b"\x68\xfd"),))
    assert matches_or_patterns(payload, ((0, 0x16, b"\x68\xfd"), (0, 0x03, b"\x6f\xfd")))

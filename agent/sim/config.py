"""What a simulated BlueZ starts with: adapters, their places and quirks, the radio and the air tick.

Read from JSON or TOML (by file extension) so tests can write a dict with ``json.dumps`` and the test-bed
can keep scenarios in TOML. Errors name the key, as the agent's own config does.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.sim.radio import RadioParams, Track, Waypoint

ADAPTER_NAME = re.compile(r"^hci[0-9]{1,3}$")
ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
DEFAULT_ADV_INTERVAL_MS = 1280  # the kernel's default when BlueZ < 5.77 sends no MinInterval/MaxInterval


class SimConfigError(ValueError):
    """A bad simulator config, naming the key."""


@dataclass(frozen=True)
class AdapterConfig:
    """One simulated controller.

    ``legacy`` models controllers (the Pi's CYW43455) that refuse LE Set Random Address while scanning, so a
    new advertisement registered during discovery stays off. ``extended`` models a controller driven with
    extended advertising: every instance is its own advertising set with its own random address, and
    LEAdvertisingManager1 says so (``HardwareOffload``); without it all instances on air share the one
    controller address. ``experimental`` exposes AdvertisementMonitorManager1 (bluetoothd --experimental),
    which passive scanning needs.
    """

    name: str
    address: str
    track: Track
    legacy: bool = False
    extended: bool = False
    tx_power: int = 0
    adv_interval_ms: int = DEFAULT_ADV_INTERVAL_MS
    max_advertisements: int = 5
    experimental: bool = False
    powered: bool = True


@dataclass(frozen=True)
class SimConfig:
    adapters: tuple[AdapterConfig, ...] = ()
    radio: RadioParams = field(default_factory=RadioParams)
    tick_seconds: float = 0.2
    device_timeout_seconds: float = 30.0
    seed: int = 0

    def adapter(self, name: str) -> AdapterConfig | None:
        return next((a for a in self.adapters if a.name == name), None)


def default_address(name: str) -> str:
    """A stable public address per adapter name (the adapter's own, never used on air by our adverts)."""
    index = int(name[3:])
    return f"00:1A:7D:DA:{index >> 8:02X}:{index & 0xFF:02X}"


def load_sim_config(path: Path) -> SimConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimConfigError(f"{path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise SimConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({exc})") from None
    return sim_config_from_dict(raw)


def sim_config_from_dict(raw: object) -> SimConfig:
    if not isinstance(raw, dict):
        raise SimConfigError("config: expected a table")
    _known(raw, "", {"adapters", "radio", "tick_seconds", "device_timeout_seconds", "seed"})
    adapters_raw = raw.get("adapters", [])
    if not isinstance(adapters_raw, list):
        raise SimConfigError("adapters: expected a list of tables")
    adapters = tuple(adapter_config_from_dict(a, f"adapters[{i}]") for i, a in enumerate(adapters_raw))
    names = [a.name for a in adapters]
    if len(set(names)) != len(names):
        raise SimConfigError("adapters: adapter names must be unique")
    radio_raw = raw.get("radio", {})
    if not isinstance(radio_raw, dict):
        raise SimConfigError("radio: expected a table")
    _known(radio_raw, "radio", set(RadioParams.__dataclass_fields__))
    try:
        radio = RadioParams(**{k: _number(v, f"radio.{k}") for k, v in radio_raw.items()})
    except ValueError as exc:
        raise SimConfigError(str(exc)) from None
    tick = _number(raw.get("tick_seconds", 0.2), "tick_seconds")
    if not 0.01 <= tick <= 5.0:
        raise SimConfigError("tick_seconds: must be between 0.01 and 5")
    timeout = _number(raw.get("device_timeout_seconds", 30.0), "device_timeout_seconds")
    if timeout <= 0:
        raise SimConfigError("device_timeout_seconds: must be positive")
    seed = raw.get("seed", 0)
    if type(seed) is not int:
        raise SimConfigError(f"seed: expected an integer, got {seed!r}")
    return SimConfig(adapters, radio, tick, timeout, seed)


def adapter_config_from_dict(raw: object, key: str) -> AdapterConfig:
    if not isinstance(raw, dict):
        raise SimConfigError(f"{key}: expected a table")
    _known(
        raw,
        key,
        {
            "name",
            "address",
            "x",
            "y",
            "track",
            "legacy",
            "extended",
            "tx_power",
            "adv_interval_ms",
            "max_advertisements",
            "experimental",
            "powered",
        },
    )
    name = raw.get("name")
    if not isinstance(name, str) or not ADAPTER_NAME.match(name):
        raise SimConfigError(f"{key}.name: expected an adapter name like 'hci0', got {name!r}")
    address = raw.get("address", default_address(name))
    if not isinstance(address, str) or not ADDRESS.match(address):
        raise SimConfigError(f"{key}.address: expected 'XX:XX:XX:XX:XX:XX' in upper case, got {address!r}")
    if "track" in raw:
        track = _track(raw["track"], f"{key}.track")
    else:
        track = Track.fixed(_number(raw.get("x", 0.0), f"{key}.x"), _number(raw.get("y", 0.0), f"{key}.y"))
    cfg = AdapterConfig(name=name, address=address, track=track)
    for flag in ("legacy", "extended", "experimental", "powered"):
        if flag in raw:
            if type(raw[flag]) is not bool:
                raise SimConfigError(f"{key}.{flag}: expected true or false, got {raw[flag]!r}")
            cfg = replace(cfg, **{flag: raw[flag]})
    if cfg.legacy and cfg.extended:
        raise SimConfigError(f"{key}: legacy and extended exclude each other (extended sets have own addresses)")
    limits = {"tx_power": (-127, 20), "adv_interval_ms": (20, 10_485_759), "max_advertisements": (1, 64)}
    for name_, (lo, hi) in limits.items():
        if name_ in raw:
            value = raw[name_]
            if type(value) is not int or not lo <= value <= hi:
                raise SimConfigError(f"{key}.{name_}: expected an integer in {lo}..{hi}, got {value!r}")
            cfg = replace(cfg, **{name_: value})
    return cfg


def _track(raw: object, key: str) -> Track:
    if not isinstance(raw, list) or not raw:
        raise SimConfigError(f"{key}: expected a list of [t, x, y] waypoints")
    points = []
    for i, p in enumerate(raw):
        if not isinstance(p, list) or len(p) != 3:
            raise SimConfigError(f"{key}[{i}]: expected [t, x, y]")
        points.append(Waypoint(*(_number(v, f"{key}[{i}]") for v in p)))
    try:
        return Track(tuple(points))
    except ValueError as exc:
        raise SimConfigError(f"{key}: {exc}") from None


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimConfigError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _known(raw: dict[str, Any], key: str, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise SimConfigError(f"{where}: unknown key (known: {', '.join(sorted(allowed))})")

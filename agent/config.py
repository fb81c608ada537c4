"""The agent's configuration: a TOML file with documented defaults, validated on load.

A field device is configured once and then runs for months, so a mistake must be caught at start with a
message that names the key (``agent.retention_days: expected an integer, got "ten"``), never turn into
a traceback hours later. Every section is a frozen dataclass; its fields and defaults are the reference
for the file format (``proxitrace config show`` prints the effective values).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from agent.ble.settings import BleSettings
from agent.risk import RiskSettings

DEFAULT_CONFIG_PATH = Path("/etc/proxitrace/config.toml")
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A config problem, with the dotted key it is about."""


@dataclass(frozen=True)
class AgentSection:
    """``flush_seconds``: how often what was heard is committed to the store (real time). A power cut loses
    at most that much; longer means fewer writes to a Pi's SD card."""

    scheme: Literal["dp3t", "gaen", "ebid"] = "dp3t"
    retention_days: int = 14
    clock: str = "system"
    flush_seconds: float = 10.0


@dataclass(frozen=True)
class BleSection:
    advertise_adapter: str = "auto"
    scan_adapters: tuple[str, ...] = ("auto",)
    scan_seconds: float = 0.0
    scan_period_seconds: float = 0.0
    passive: bool = False
    watchdog_seconds: float = 90.0
    tx_power: int | None = None


@dataclass(frozen=True)
class CalibrationSection:
    table: str = ""
    rssi_correction: float | None = None
    tx_power: int | None = None


@dataclass(frozen=True)
class BackendSection:
    """``url``/``public_key``/``key_id``: our backend and the key that signs its lists (``proxitrace backend
    keygen`` prints both values). ``key_server_*``: optionally also follow a plain GAEN key server (its
    ``index.txt`` URL, public key and the ``verification_key_id`` its exports are signed under).
    ``status_interval_seconds``: how often EBID mode polls its status (the backend allows a few a day)."""

    url: str = ""
    public_key: str = ""
    key_id: str = "proxitrace"
    sync_interval_seconds: int = 7200
    sync_jitter_seconds: int = 600
    key_server_index_url: str = ""
    key_server_public_key: str = ""
    key_server_key_id: str = ""
    status_interval_seconds: int = 21_600


@dataclass(frozen=True)
class NotifySection:
    hook: str = ""
    hook_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    ble: BleSection = field(default_factory=BleSection)
    calibration: CalibrationSection = field(default_factory=CalibrationSection)
    backend: BackendSection = field(default_factory=BackendSection)
    risk: dict[str, Any] = field(default_factory=dict)  # agent.risk.RiskSettings.from_dict validates it
    notify: NotifySection = field(default_factory=NotifySection)


def load_config(path: Path | None) -> AgentConfig:
    """Read ``path`` (or the default file when it exists, else defaults) and validate it."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return AgentConfig()
        path = DEFAULT_CONFIG_PATH
    return config_from_dict(read_toml(path))


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a table, or one ConfigError line naming the file (shared with the backend's config)."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def config_from_dict(raw: dict[str, Any]) -> AgentConfig:
    config = build(AgentConfig, raw, "")
    _check(config)
    try:
        risk_settings(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config


def config_to_toml(config: AgentConfig) -> str:
    """The configuration as a TOML file that loads back to the same values (unset keys become comments)."""
    lines: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"[{f.name}]")
            for sub in dataclasses.fields(value):
                item = getattr(value, sub.name)
                lines.append(f"# {sub.name} is unset" if item is None else f"{sub.name} = {_toml_value(item)}")
            lines.append("")
        else:
            _toml_table(f.name, value, lines)
    return "\n".join(lines).rstrip() + "\n"


def _toml_table(name: str, table: dict[str, Any], lines: list[str]) -> None:
    lines.append(f"[{name}]")
    nested = {k: v for k, v in table.items() if isinstance(v, dict)}
    lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in nested)
    lines.append("")
    for key, sub in nested.items():
        _toml_table(f"{name}.{_toml_key(key)}", sub, lines)


def _toml_key(key: object) -> str:
    text = str(key)
    return text if text.replace("_", "").replace("-", "").isalnum() and text.isascii() else json.dumps(text)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are all valid in a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def risk_settings(config: AgentConfig) -> RiskSettings:
    return RiskSettings.from_dict(config.risk)


def ble_settings(ble: BleSection, tx_power: int) -> BleSettings:
    """The BLE edge's settings from the [ble] table; a configured tx_power beats the calibrated one."""
    return BleSettings(
        advertise_adapter=ble.advertise_adapter,
        scan_adapters=ble.scan_adapters,
        tx_power=ble.tx_power if ble.tx_power is not None else tx_power,
        scan_seconds=ble.scan_seconds,
        scan_period_seconds=ble.scan_period_seconds,
        passive=ble.passive,
        watchdog_s=ble.watchdog_seconds,
    )


def _check(config: AgentConfig) -> None:
    ble = config.ble
    if (
        ble.scan_seconds < 0
        or ble.scan_period_seconds < 0
        or (ble.scan_seconds and ble.scan_seconds > ble.scan_period_seconds)
    ):
        raise ConfigError("ble.scan_seconds: must be between 0 (continuous) and ble.scan_period_seconds")
    if not 0.1 <= config.agent.flush_seconds <= 300:
        raise ConfigError("agent.flush_seconds: must be between 0.1 and 300")
    if not 1 <= config.agent.retention_days <= 60:
        raise ConfigError("agent.retention_days: must be between 1 and 60")
    if not ble.scan_adapters:
        raise ConfigError('ble.scan_adapters: name at least one adapter (or "auto")')


def build(cls: type[_T], raw: object, prefix: str) -> _T:
    """A frozen dataclass from a TOML table, checking every key and type and naming the bad one."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{_key(prefix, unknown[0])}: unknown key (known: {', '.join(sorted(fields))})")
    values = {name: _convert(hints[name], raw[name], _key(prefix, name)) for name in raw}
    return cls(**values)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(hint: Any, value: object, key: str) -> object:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)  # type: ignore[arg-type]
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and (type(value) is not hint):
        names = {int: "an integer", str: "a string", bool: "true or false"}
        raise ConfigError(f"{key}: expected {names[hint]}, got {value!r}")
    if hint is float:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return value

"""The agent's configuration: a TOML file with documented defaults, validated on load.

A field device is configured once and then runs for months, so a mistake must be caught at start with a
message that names the key (``agent.retention_days: expected an integer, got "ten"``), never turn into
a traceback hours later. Every section is a frozen dataclass; its fields and defaults are the reference
for the file format (``proxitrace config show`` prints the effective values).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from agent import signing_keys
from agent.ble.settings import BleSettings
from agent.calibration import Calibration, adapter_model_keys, load_table, read_local, resolve
from agent.configfile import ConfigError, build, read_toml
from agent.feedback import CONSENT_WINDOW_SECONDS
from agent.protocol import transport
from agent.risk import RiskSettings
from agent.sync.errors import NotConfigured
from agent.sync.settings import KeyServer, SyncSettings
from agent.wearable.settings import WearableSettings

DEFAULT_CONFIG_PATH = Path("/etc/proxitrace/config.toml")
MAX_MATCH_WORKERS = 64
"""More matching processes than this is a typo, not a machine: each costs an interpreter (~20 MB)."""


@dataclass(frozen=True)
class AgentSection:
    """``flush_seconds``: how often what was heard is committed to the store (real time). A power cut loses
    at most that much; longer means fewer writes to a Pi's SD card. ``accept_unsynchronised_clock_testbed``:
    advertise and record although no NTP client has synchronised the clock (a desk rig, a container); never
    in the field, where a Pi without network believes it is days in the past (the build-time floor holds
    even then). ``match_workers``: processes a large list is matched in (0: one per core the agent may run
    on); a list too small to repay starting them is matched in the agent's own process whatever this says."""

    scheme: Literal["dp3t", "gaen", "ebid"] = "dp3t"
    retention_days: int = 14
    clock: str = "system"
    flush_seconds: float = 10.0
    accept_unsynchronised_clock_testbed: bool = False
    match_workers: int = 0


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
    ``status_interval_seconds``: how often EBID mode asks for its risk verdict (the backend allows a few a day).
    Key values take the key itself (PEM or base64) or the absolute path of a file holding it.
    ``ca_file``: PEM of the CA(s) that signed the backend's TLS certificate; when set only it is trusted (else
    the system store; a provisioning bundle pins a pilot's own CA). ``allow_insecure_http_lab``: let ``url``
    be plain http:// to a host other than loopback, for a lab only (``status`` and ``doctor`` then warn).
    ``submission_spread_seconds``: an EBID report's separate submissions are spread over this long.
    ``reregister_spread_seconds``: after an erasure, an EBID device registers again at a random time within this.
    ``dummy_traffic``/``dummy_mean_interval_seconds``: fake reports at random intervals (DP-3T's design)."""

    url: str = ""
    ca_file: str = ""
    allow_insecure_http_lab: bool = False
    public_key: str = ""
    key_id: str = "proxitrace"
    sync_interval_seconds: int = 7200
    sync_jitter_seconds: int = 600
    key_server_index_url: str = ""
    key_server_public_key: str = ""
    key_server_key_id: str = ""
    status_interval_seconds: int = 21_600
    submission_spread_seconds: float = 600.0
    reregister_spread_seconds: float = 1800.0
    dummy_traffic: bool = True
    dummy_mean_interval_seconds: float = 86_400.0


@dataclass(frozen=True)
class NotifySection:
    hook: str = ""
    hook_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class WearableSection:
    """A screenless wearable's button and LED (``agent.feedback`` says what they show and mean) and where a
    health officer's TAN file arrives. ``chip``: the GPIO character device (``/dev/gpiochip0``; empty: no
    button, no LED). ``button_line``/``led_line``: line offsets on that chip (on a Pi, the BCM GPIO number).
    ``button_active_low``: the button connects its line to ground (the pull-up is switched on).
    ``tan_dir``: where removable media are mounted (``/media``); a ``*.proxitrace-tan`` file there, or two
    levels below, offers a report that a long press within ``consent_seconds`` sends."""

    chip: str = ""
    button_line: int = 17
    led_line: int = 27
    button_active_low: bool = True
    led_active_low: bool = False
    tan_dir: str = ""
    consent_seconds: float = CONSENT_WINDOW_SECONDS


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    ble: BleSection = field(default_factory=BleSection)
    calibration: CalibrationSection = field(default_factory=CalibrationSection)
    backend: BackendSection = field(default_factory=BackendSection)
    risk: dict[str, Any] = field(default_factory=dict)  # agent.risk.RiskSettings.from_dict validates it
    notify: NotifySection = field(default_factory=NotifySection)
    wearable: WearableSection = field(default_factory=WearableSection)


def load_config(path: Path | None) -> AgentConfig:
    """Read ``path`` (or the default file when it exists, else defaults) and validate it."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return AgentConfig()
        path = DEFAULT_CONFIG_PATH
    return config_from_dict(read_toml(path))


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


def device_calibration(
    config: AgentConfig,
    state_dir: Path,
    adapter: str | None = None,
    sysfs: Path = Path("/sys/class/bluetooth"),
    dt_model: Path = Path("/proc/device-tree/model"),
) -> Calibration:
    """This device's TX power and receiver RSSI correction: THE rule, used by the daemon, ``proxitrace
    sync`` and ``proxitrace match`` alike, so one list is scored one way whoever matches it.

    A value set in ``[calibration]`` wins (the operator knows better), then this device's own measurement
    (``proxitrace calibrate``), then the calibration table's entry for the adapter's model, then the
    table's default. ``adapter`` None: the advertising adapter (``hci0`` when that is "auto").
    Raises ``CalibrationError`` for an unreadable table or measurement file."""
    if adapter is None:
        adapter = config.ble.advertise_adapter if config.ble.advertise_adapter != "auto" else "hci0"
    set_in = config.calibration
    table = load_table(Path(set_in.table) if set_in.table else None)
    c = resolve(table, adapter_model_keys(adapter, sysfs, dt_model), read_local(state_dir))
    if set_in.rssi_correction is None and set_in.tx_power is None:
        return c
    return Calibration(
        set_in.tx_power if set_in.tx_power is not None else c.tx_power,
        set_in.rssi_correction if set_in.rssi_correction is not None else c.rssi_correction,
        c.confidence,
        "config",
        c.model,
        c.quirks,
    )


def sync_settings(config: AgentConfig) -> SyncSettings:
    """The ``[backend]`` section as the sync edge's settings, checked; ``ConfigError`` names the key at fault."""
    b = config.backend
    if not b.url:
        raise ConfigError("backend.url: not set (the backend's base URL, e.g. https://backend.example)")
    for key, url in (("backend.url", b.url), ("backend.key_server_index_url", b.key_server_index_url)):
        refusal = url and transport.url_refusal(url, key, b.allow_insecure_http_lab, "backend.allow_insecure_http_lab")
        if refusal:
            raise ConfigError(refusal)
    public = _public_key(b.public_key, "backend.public_key") if b.public_key else None
    key_server = None
    if b.key_server_index_url:
        if not b.key_server_public_key or not b.key_server_key_id:
            raise ConfigError("backend.key_server_public_key: a key server needs its public key and key id")
        key_server = KeyServer(
            b.key_server_index_url,
            _public_key(b.key_server_public_key, "backend.key_server_public_key"),
            b.key_server_key_id,
        )
    settings = SyncSettings(
        base_url=b.url.rstrip("/"),
        public_key=public,
        key_id=b.key_id,
        interval_seconds=float(b.sync_interval_seconds),
        jitter_seconds=float(b.sync_jitter_seconds),
        status_interval_seconds=float(b.status_interval_seconds),
        retention_days=config.agent.retention_days,
        key_server=key_server,
        ca_file=b.ca_file,
        submission_spread_seconds=float(b.submission_spread_seconds),
        reregister_spread_seconds=float(b.reregister_spread_seconds),
        dummy_traffic=b.dummy_traffic,
        dummy_mean_interval_seconds=float(b.dummy_mean_interval_seconds),
        match_workers=config.agent.match_workers,
    )
    if settings.ca_file:
        try:
            from agent.sync.client import tls_context  # aiohttp: loaded only for a configured CA file

            tls_context(settings)  # a missing or garbled CA file stops the agent here, named
        except NotConfigured as exc:
            raise ConfigError(str(exc)) from None
    return settings


def insecure_transport_warning(config: AgentConfig) -> str | None:
    """The warning ``status`` and ``doctor`` show while the lab setting sends secrets over plain http."""
    b = config.backend
    urls = [u for u in (b.url, b.key_server_index_url) if u and transport.insecure(u)]
    if not (b.allow_insecure_http_lab and urls):
        return None
    return (
        f"backend.allow_insecure_http_lab is on: {', '.join(urls)} is plain http, "
        "so TANs, tokens and keys cross the network in clear (lab use only)"
    )


def _public_key(text: str, key: str) -> ec.EllipticCurvePublicKey:
    try:
        return signing_keys.public_key_from_setting(text, source=key)
    except signing_keys.SigningKeyError as exc:
        raise ConfigError(exc.reason) from None


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


def wearable_settings(config: AgentConfig) -> WearableSettings | None:
    """The ``[wearable]`` table as the wearable edge's settings, or None when it uses neither GPIO nor TAN files."""
    w = config.wearable
    if not w.chip and not w.tan_dir:
        return None
    chip = Path(w.chip) if "/" in w.chip else Path("/dev") / w.chip  # "gpiochip0" names /dev/gpiochip0
    return WearableSettings(
        chip=chip if w.chip else None,
        button_line=w.button_line,
        led_line=w.led_line,
        button_active_low=w.button_active_low,
        led_active_low=w.led_active_low,
        tan_dir=Path(w.tan_dir) if w.tan_dir else None,
        consent_seconds=w.consent_seconds,
    )


def _check_wearable(w: WearableSection) -> None:
    if w.button_line < 0 or w.led_line < 0:
        raise ConfigError("wearable.button_line: line offsets are 0 or more")
    if w.button_line == w.led_line:
        raise ConfigError(f"wearable.led_line: the LED and the button cannot share line {w.led_line}")
    if not 10 <= w.consent_seconds <= 3600:  # under 10 s nobody can decide; over an hour a forgotten card sends
        raise ConfigError("wearable.consent_seconds: must be between 10 and 3600")
    if w.tan_dir and not w.chip:
        raise ConfigError("wearable.tan_dir: needs wearable.chip (the button's long press is the consent)")
    if w.tan_dir and not Path(w.tan_dir).is_absolute():
        raise ConfigError(f"wearable.tan_dir: must be an absolute path, got {w.tan_dir!r}")


def _check(config: AgentConfig) -> None:
    _check_wearable(config.wearable)
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
    if not 0 <= config.agent.match_workers <= MAX_MATCH_WORKERS:
        raise ConfigError(f"agent.match_workers: must be between 0 (one per core) and {MAX_MATCH_WORKERS}")
    if not 0 <= config.backend.submission_spread_seconds <= 86_400:
        raise ConfigError("backend.submission_spread_seconds: must be between 0 and 86400")
    if not 0 <= config.backend.reregister_spread_seconds <= config.backend.status_interval_seconds:
        raise ConfigError("backend.reregister_spread_seconds: must be between 0 and backend.status_interval_seconds")
    if not 60 <= config.backend.dummy_mean_interval_seconds <= 30 * 86_400:
        raise ConfigError("backend.dummy_mean_interval_seconds: must be between 60 and 2592000")
    if not ble.scan_adapters:
        raise ConfigError('ble.scan_adapters: name at least one adapter (or "auto")')

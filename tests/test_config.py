import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, config_from_dict, config_to_toml, load_config, sync_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("agent.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(None) == AgentConfig()


def test_file_values_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[agent]\nscheme = "ebid"\n[ble]\nscan_adapters = ["hci1", "hci2"]\nwatchdog_seconds = 30\n')
    config = load_config(path)
    assert config.agent.scheme == "ebid"
    assert config.ble.scan_adapters == ("hci1", "hci2")
    assert config.ble.watchdog_seconds == 30.0
    assert config.agent.flush_seconds == 10.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"agent": {"retention_days": "ten"}}, "agent.retention_days: expected an integer"),
        ({"agent": {"flush_seconds": 0}}, "agent.flush_seconds: must be between 0.1 and 300"),
        ({"agent": {"scheme": "robert"}}, "agent.scheme: must be one of"),
        ({"agnet": {}}, "agnet: unknown key"),
        ({"ble": {"scan_adapters": "hci0"}}, "ble.scan_adapters: expected a list"),
        ({"ble": {"scan_adapters": []}}, "ble.scan_adapters: name at least one"),
        ({"ble": {"passive": 1}}, "ble.passive: expected true or false"),
        ({"ble": {"scan_seconds": 10, "scan_period_seconds": 5}}, "ble.scan_seconds: must be between"),
        ({"agent": {"retention_days": 0}}, "agent.retention_days: must be between"),
        ({"agent": {"match_workers": -1}}, r"agent.match_workers: must be between 0 \(one per core\) and 64"),
        ({"agent": {"match_workers": 65}}, r"agent.match_workers: must be between 0 \(one per core\) and 64"),
        ({"agent": {"match_workers": "all"}}, "agent.match_workers: expected an integer"),
        ({"risk": {"model": "magic"}}, "risk.model: 'magic' is not a risk model"),
        ({"risk": 3}, "risk: expected a table"),
        (
            {"backend": {"reregister_spread_seconds": 30_000}},
            "backend.reregister_spread_seconds: must be between 0 and backend.status_interval_seconds",
        ),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config_from_dict(raw)


def test_match_workers_reaches_the_sync_settings() -> None:
    backend = {"url": "https://backend.example"}
    assert sync_settings(config_from_dict({"backend": backend})).match_workers == 0  # 0: one per core
    configured = config_from_dict({"agent": {"match_workers": 3}, "backend": backend})
    assert sync_settings(configured).match_workers == 3


def test_unreadable_files_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_config_show_output_loads_back_to_the_same_config() -> None:
    config = config_from_dict(
        {
            "agent": {"scheme": "gaen", "flush_seconds": 2.5},
            "ble": {"scan_adapters": ["hci1", "hci2"], "tx_power": -4},
            "backend": {"url": "http://127.0.0.1:8080", "public_key": 'with "quotes" and \\ é'},
            "risk": {"model": "swisscovid", "exposure_windows": {"scan_interval_seconds": 300}},
        }
    )
    assert config_from_dict(tomllib.loads(config_to_toml(config))) == config
    assert config_from_dict(tomllib.loads(config_to_toml(AgentConfig()))) == AgentConfig()


def test_the_example_config_documents_every_key_with_its_default() -> None:
    text = (ROOT / "systemd" / "config.example.toml").read_text()
    raw = tomllib.loads("\n".join(re.sub(r"^# (?=[a-z_]+ = )", "", line) for line in text.splitlines()))
    shown, defaults = config_from_dict(raw), AgentConfig()
    for section in ("agent", "ble", "calibration", "backend", "notify"):
        fields = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        assert set(raw[section]) == fields, section  # every key is there, and no key that does not exist
        for name in fields:
            default = getattr(getattr(defaults, section), name)
            if default is not None:  # an unset key is shown with an example value
                assert getattr(getattr(shown, section), name) == default, f"{section}.{name}"

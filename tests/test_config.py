from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, config_from_dict, load_config


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
    assert config.ble.rotation_min_seconds == 600


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ble": {"rotation_min_seconds": "ten"}}, "ble.rotation_min_seconds: expected an integer"),
        ({"agent": {"scheme": "robert"}}, "agent.scheme: must be one of"),
        ({"agnet": {}}, "agnet: unknown key"),
        ({"ble": {"scan_adapters": "hci0"}}, "ble.scan_adapters: expected a list"),
        ({"ble": {"scan_adapters": []}}, "ble.scan_adapters: name at least one"),
        ({"ble": {"passive": 1}}, "ble.passive: expected true or false"),
        ({"ble": {"scan_seconds": 10, "scan_period_seconds": 5}}, "ble.scan_seconds: must be between"),
        ({"agent": {"retention_days": 0}}, "agent.retention_days: must be between"),
        ({"risk": {"model": "magic"}}, "risk.model: 'magic' is not a risk model"),
        ({"risk": 3}, "risk: expected a table"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config_from_dict(raw)


def test_unreadable_files_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)

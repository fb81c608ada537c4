"""What systemd/README.md tells an operator to write and type for the portal is what the backend accepts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from agent.server.config import backend_config_from_dict

DOC = Path(__file__).resolve().parents[2] / "systemd" / "README.md"
SECTION = DOC.read_text().split("## The portal for a pilot", 1)[1]


def test_the_portal_config_block_loads_and_moves_the_portal_off_the_device_listener() -> None:
    [block] = re.findall(r"```toml\n(.*?)```", SECTION, re.S)
    config = backend_config_from_dict(tomllib.loads(block))
    assert (config.portal.host, config.portal.port, config.portal.secure_cookies) == ("127.0.0.1", 8081, True)
    assert (config.portal.max_failed_logins, config.portal.lockout_seconds) == (5, 900)


def test_the_officer_commands_are_the_ones_the_cli_test_runs() -> None:
    commands = re.findall(
        r"^proxitrace backend officer (\w+) NAME --config /etc/proxitrace/backend.toml", SECTION, re.M
    )
    assert commands == ["add", "token", "disable", "reset"]
    exercised = (Path(__file__).parent / "test_portal_cli.py").read_text()
    for sub in commands:
        assert f'"officer", "{sub}"' in exercised, sub


def test_the_screenshots_exist_and_are_small() -> None:
    shots = re.findall(r"\]\(([\w-]+\.png)\)", SECTION)
    assert len(shots) == 3
    for name in shots:
        size = (DOC.parent / name).stat().st_size
        assert 1000 < size < 150_000, name

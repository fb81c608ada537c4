"""The shipped units parse cleanly under systemd-analyze and keep the hardening the design asks for."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.run import EXIT_STATE_DIR_UNUSABLE

UNITS = Path(__file__).resolve().parent.parent / "systemd"


def read_unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify_without_warnings(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this interpreter's proxitrace entry point.
    stand_in = Path(sys.executable).with_name("proxitrace")
    if not stand_in.exists():
        pytest.skip("the proxitrace console script is not installed in this environment")
    names = []
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/bin/proxitrace", str(stand_in))
        name = unit.name.replace("@.service", "@hci1.service")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True)
    problems = [
        line for line in (out.stdout + out.stderr).splitlines() if str(tmp_path) in line or "proxitrace" in line
    ]
    assert out.returncode == 0 and problems == [], out.stdout + out.stderr


@pytest.mark.parametrize("name", ["proxitrace.service", "proxitrace@.service"])
def test_agent_units_are_notify_with_watchdog_and_hardened(name: str) -> None:
    service = read_unit(name)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 90  # longer than the scanner's silence watchdog
    assert service["StateDirectoryMode"] == "0700"
    assert service["UMask"] == "0077"
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    assert service["NoNewPrivileges"] == "yes"
    assert service["User"] == "proxitrace"
    assert service["RestartPreventExitStatus"] == str(EXIT_STATE_DIR_UNUSABLE)  # no restart loop on a bad mount


@pytest.mark.parametrize(
    ("name", "user"), [("proxitrace.sysusers", "proxitrace"), ("proxitrace-backend.sysusers", "proxitrace-backend")]
)
def test_sysusers_declares_static_users(name: str, user: str) -> None:
    """One file per package (each installs its own), each declaring that package's service user."""
    lines = [line.split() for line in (UNITS / name).read_text().splitlines() if line and not line.startswith("#")]
    assert {fields[1] for fields in lines if fields[0] == "u"} == {user}

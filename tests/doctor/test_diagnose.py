import dataclasses
from pathlib import Path

import pytest

from agent.doctor import AdapterFacts, HostFacts, _state_dir_facts, diagnose, render

GOOD = HostFacts(
    now=1_780_000_000,
    kernel_release="6.6.51+rpt-rpi-v8",
    machine_model="Raspberry Pi 4 Model B Rev 1.5",
    bluez_version="5.66",
    privacy=None,
    adapters=(
        AdapterFacts("hci0", powered=True, max_adv_len=31),
        AdapterFacts("hci1", True, 251, ("1M", "2M")),
    ),
    ntp_synchronized=True,
    state_dir="/var/lib/proxitrace",
    state_dir_mode=0o700,
)


def by_name(facts: HostFacts) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in diagnose(facts)}


def test_a_healthy_pi_is_all_ok_and_names_legacy_vs_extended() -> None:
    checks = by_name(GOOD)
    assert {s for s, _ in checks.values()} == {"ok"}
    assert "legacy advertising only" in checks["adapter hci0"][1]
    assert "extended advertising" in checks["adapter hci1"][1]
    assert "stay at controller defaults" in checks["bluez"][1]  # 5.66 < 5.77


@pytest.mark.parametrize(
    ("change", "name", "status", "phrase"),
    [
        ({"bluez_version": None}, "bluez", "error", "bluetoothd not found"),
        ({"kernel_release": "6.12.93+rpt-rpi-2712"}, "kernel", "error", "known to break D-Bus advertising"),
        ({"dbus_error": "org.freedesktop.DBus.Error.ServiceUnknown"}, "dbus", "error", "ServiceUnknown"),
        ({"adapters": ()}, "adapters", "error", "no Bluetooth adapter"),
        ({"adapters": (AdapterFacts("hci0", powered=False),)}, "adapter hci0", "error", "powered off"),
        (
            {"adapters": (AdapterFacts("hci0", True, can_advertise=False),)},
            "adapter hci0",
            "warning",
            "no LE adv",
        ),
        ({"privacy": "device"}, "privacy", "warning", "out of step with the IDs"),
        ({"now": 86_400.0}, "clock", "error", "in the past"),
        ({"ntp_synchronized": False}, "clock", "warning", "not NTP-synchronised"),
        ({"state_dir_mode": 0o755}, "state dir", "error", "mode 0755"),
        ({"loose_files": ("agent.db",)}, "state dir", "error", "readable by others: agent.db"),
    ],
)
def test_each_problem_is_named_with_a_fix(change: dict[str, object], name: str, status: str, phrase: str) -> None:
    facts = dataclasses.replace(GOOD, **change)  # type: ignore[arg-type]
    checks = {c.name: c for c in diagnose(facts)}
    assert checks[name].status == status
    assert phrase in checks[name].detail
    assert checks[name].fix


def test_newer_bluez_fixes_the_broken_kernel_and_unlocks_features() -> None:
    facts = dataclasses.replace(GOOD, kernel_release="6.18.34-v8", bluez_version="bluetoothd 5.87")
    checks = by_name(facts)
    assert checks["kernel"][0] == "ok"
    assert "intervals and TX power can be set" in checks["bluez"][1]


def test_no_adapter_checks_when_dbus_is_down() -> None:
    names = by_name(dataclasses.replace(GOOD, dbus_error="no system bus"))
    assert not any(n.startswith("adapter") for n in names)


def test_state_dir_facts_find_loose_files(tmp_path: Path) -> None:
    (tmp_path / "ok.db").touch(mode=0o600)
    loose = tmp_path / "keys.pem"
    loose.touch()
    loose.chmod(0o644)
    tmp_path.chmod(0o700)
    mode, mine, files = _state_dir_facts(tmp_path)
    assert (mode, mine, files) == (0o700, True, ("keys.pem",))
    assert _state_dir_facts(tmp_path / "absent") == (None, True, ())


def test_render_puts_fixes_under_problems() -> None:
    text = render(diagnose(dataclasses.replace(GOOD, privacy="device")))
    assert "WARNING privacy" in text
    assert "-> set Privacy=off" in text

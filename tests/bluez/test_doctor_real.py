import json
import subprocess
import sys


def test_doctor_reports_the_real_stack(vm_adapters: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(tmp_path / "state"), "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    version = subprocess.run(["bluetoothctl", "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert checks["bluez"]["status"] == "ok" and f"BlueZ {version}" in checks["bluez"]["detail"]
    assert checks["dbus"]["status"] == "ok"
    adapters = {a["name"]: a for a in report["facts"]["adapters"]}
    assert set(vm_adapters) <= set(adapters)
    for name in vm_adapters:
        assert adapters[name]["powered"] and adapters[name]["can_advertise"]
        assert checks[f"adapter {name}"]["status"] == "ok"
    assert out.returncode == 0, out.stdout

import json
import subprocess

from click.testing import CliRunner

from agent.cli import cli


def test_doctor_reports_the_real_stack(vm_adapters: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the command in this process: a fresh interpreter costs 10-30 s under the VM's emulated CPU
    out = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "state"), "doctor", "--json"])
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
    assert out.exit_code == 0, out.stdout

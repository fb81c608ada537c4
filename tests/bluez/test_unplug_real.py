"""A controller removed and re-added (a USB dongle pulled and plugged back) under a running agent.

The VM's shared air belongs to the btvirt started by hw/vm/run; this test starts a second btvirt with
one controller of its own, so that killing that process removes exactly that controller from the kernel,
as an unplug does, and starting it again adds one back (the kernel reuses the lowest free index).
"""

import os
import subprocess
import time
from pathlib import Path

from support.bluez_agents import start_agent, wait_for

from agent.testbed.capture import controllers

SYSFS = Path("/sys/class/bluetooth")
RECOVERY_SECONDS = 30


def hci_names() -> set[str]:
    return {p.name for p in SYSFS.iterdir() if p.name.startswith("hci") and ":" not in p.name}


def plug(out: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A one-controller btvirt; the name of the controller it adds."""
    before = hci_names()
    log = (out / "btvirt-unplug.log").open("ab")
    proc = subprocess.Popen(["btvirt", "-L", "-l1"], stdout=log, stderr=log)
    assert wait_for(lambda: hci_names() - before, 30, interval=0.2), "btvirt added no controller"
    (name,) = hci_names() - before
    return proc, name


def unplug(proc: subprocess.Popen[bytes], name: str) -> None:
    proc.terminate()
    proc.wait(30)
    assert wait_for(lambda: name not in hci_names(), 30, interval=0.2), f"{name} is still there"


def capture() -> Path:
    return Path(os.environ["PROXITRACE_VM_OUT"]) / "btmon.snoop"


def test_agent_advertises_and_scans_again_after_its_controller_is_unplugged_and_plugged_back(tmp_path: Path) -> None:
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    dongle, name = plug(out)
    index = int(name.removeprefix("hci"))
    agent = start_agent(name, tmp_path / "unplug", "gaen", out)
    try:
        assert wait_for(lambda: (agent.status() or {}).get("advertising") is True, 180), agent.log_path

        unplug(dongle, name)
        assert wait_for(lambda: (agent.status() or {}).get("advertising") is False, 30), "status still advertising"
        assert agent.proc.poll() is None, "the agent died with its controller"

        plugged_at = time.time()
        dongle, again = plug(out)
        assert again == name, f"the controller came back as {again}, not {name}"

        def advertising_again() -> bool:
            trace = controllers(capture()).get(index)
            return bool(trace and any(t >= plugged_at and ok for t, enable, ok in trace.enables if enable))

        def scanning_again() -> bool:
            adapters = (agent.status() or {}).get("adapters", [])
            return any(a["name"] == name and a["present"] and a["scanning"] for a in adapters)  # type: ignore[union-attr]

        assert wait_for(advertising_again, RECOVERY_SECONDS), f"no advert on air within {RECOVERY_SECONDS} s"
        assert wait_for(scanning_again, RECOVERY_SECONDS - (time.time() - plugged_at)), "not scanning again"
        (out / "unplug-recovery.txt").write_text(
            f"advertising and scanning {time.time() - plugged_at:.1f} s after plug\n"
        )
        assert (agent.status() or {}).get("advertising") is True
    finally:
        code = agent.stop()
        dongle.terminate()
        dongle.wait(30)
    assert code == 0

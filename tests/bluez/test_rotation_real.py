"""Rotation on the real stack: read back from the btmon capture what the kernel put on air."""

import os
import statistics
import subprocess
import time
from pathlib import Path

from support.bluez_agents import start_agent, wait_for

from agent.schemes.base import SERVICE_DATA_LEN
from agent.testbed.capture import controllers, linkability

SPEED = 450.0  # a 15-minute DP-3T epoch lasts 2 s
ROTATIONS = 24  # the figures want at least 20 gaps; a few spare for the first and last epoch


def capture() -> Path:
    return Path(os.environ["PROXITRACE_VM_OUT"]) / "btmon.snoop"


def test_rotation_in_sync_while_scanning_on_the_same_controller(vm_adapters: list[str], tmp_path: Path) -> None:
    adapter = vm_adapters[0]
    index = int(adapter.removeprefix("hci"))
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    started = time.time()
    clock = f"accelerated:{started}:{SPEED}:{started}"
    agent = start_agent(adapter, tmp_path / "rot", "dp3t", out, extra=["--clock", clock])
    try:
        assert wait_for(lambda: (agent.status() or {}).get("advertising") is True, 120), agent.log_path
        time.sleep(ROTATIONS * 15 * 60 / SPEED)
    finally:
        assert agent.stop() == 0
    trace = controllers(capture())[index]
    window = [(t, a, ad) for t, a, ad in trace.on_air if t >= started]
    assert len(window) >= 4, f"only {len(window)} adverts went on air"
    payloads = {ad for _, _, ad in window}
    assert len(payloads) == len(window), "an ID went on air twice"
    for _, _, ad in window:
        # exactly the designed payload after bluetoothd's own Flags structure: UUID list, then service data
        assert len(ad) == 31
        assert ad[3:11] == bytes.fromhex("030368fd171668fd") and len(ad[11:]) == SERVICE_DATA_LEN
    report = linkability([(a, ad) for _, a, ad in window])
    assert report.violations == 0, report
    enables = [e for e in trace.enables if e[0] >= started]
    assert all(ok for _, _, ok in enables), "a rotation failed to enable advertising"
    gaps = trace.gaps(since=window[0][0])
    figures = (
        f"{len(gaps)} rotation gaps: median {statistics.median(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms; "
        + ", ".join(f"{g * 1000:.1f}" for g in gaps)
        + " ms"
    )
    print(figures)
    (out / "rotation-gaps.txt").write_text(figures + "\n")
    assert len(gaps) >= 20, figures
    # Issue 19 wants a median under 100 ms on a real controller. This VM emulates its CPU (TCG): most of
    # each gap is bluetoothd between MGMT Remove Advertising and Add Advertising (mostly its GetAll round trip
    # to the agent), 140-200 ms here, and one early rotation takes up to 1.3 s, so the bounds are this tier's.
    assert statistics.median(gaps) < 0.5 and max(gaps) < 3.0, figures


def test_agent_advertises_and_scans_again_after_bluetoothd_restart(vm_adapters: list[str], tmp_path: Path) -> None:
    adapter = vm_adapters[1]
    index = int(adapter.removeprefix("hci"))
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    agent = start_agent(adapter, tmp_path / "restart", "gaen", out)
    try:
        assert wait_for(lambda: (agent.status() or {}).get("advertising") is True, 120), agent.log_path
        subprocess.run(["pkill", "-x", "bluetoothd"], check=True)
        # a fixed pause was not enough under TCG on a loaded host: the new daemon found org.bluez still owned
        # ("Name already in use") and exited, so wait for the old one to be gone
        assert wait_for(lambda: subprocess.run(["pgrep", "-x", "bluetoothd"], capture_output=True).returncode, 30)
        restarted_at = time.time()
        log = (out / "bluetoothd-restarted.log").open("ab")
        subprocess.Popen(["/usr/libexec/bluetooth/bluetoothd", "-n"], stdout=log, stderr=log)

        def advertising_again() -> bool:
            trace = controllers(capture()).get(index)
            return bool(trace and any(t >= restarted_at for t, _, _ in trace.on_air))

        assert wait_for(advertising_again, 30), "no advert on air within 30 s of the restart"
        assert wait_for(lambda: any(a["scanning"] for a in (agent.status() or {}).get("adapters", [])), 30)
    finally:
        assert agent.stop() == 0

"""Rotation on the real stack: read back from the btmon capture what the kernel put on air."""

import itertools
import os
import statistics
import subprocess
import time
from pathlib import Path

from support.bluez_agents import start_agent, wait_for

from agent.schemes.base import SERVICE_DATA_LEN
from agent.testbed.capture import LEGACY_SET, ControllerTrace, controllers, linkability

SPEED = 450.0  # a 15-minute DP-3T epoch lasts 2 s
ROTATIONS = 24  # the figures want at least 20 gaps; a few spare for the first and last epoch


def capture() -> Path:
    return Path(os.environ["PROXITRACE_VM_OUT"]) / "btmon.snoop"


def rotate(adapter: str, tmp_path: Path, name: str) -> tuple[ControllerTrace, float, dict[str, object]]:
    """Run an agent advertising and scanning on ``adapter`` through ROTATIONS epochs: what the capture saw
    of that controller, when the agent started, its last status."""
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    started = time.time()
    clock = f"accelerated:{started}:{SPEED}:{started}"
    agent = start_agent(adapter, tmp_path / name, "dp3t", out, extra=["--clock", clock])
    try:
        assert wait_for(lambda: (agent.status() or {}).get("advertising") is True, 120), agent.log_path
        time.sleep(ROTATIONS * 15 * 60 / SPEED)
        status = agent.status() or {}
    finally:
        assert agent.stop() == 0
    return controllers(capture())[int(adapter.removeprefix("hci"))], started, status


def check_on_air(trace: ControllerTrace, started: float, flags: bool) -> list[tuple[float, int, str | None, bytes]]:
    """Every (set, address, payload) on air since ``started``: the designed payload (after bluetoothd's own
    3-byte Flags structure with ``flags``), every ID under one address and every address (per set) with one
    ID, and every enable succeeded."""
    window = [(t, h, a, ad) for t, h, a, ad in trace.set_on_air if t >= started]
    assert len(window) >= 4, f"only {len(window)} adverts went on air"
    payloads = {ad for _, _, _, ad in window}
    assert len(payloads) == len(window), "an ID went on air twice"
    assert len({a for _, _, a, _ in window}) == len(window), "an address went on air twice"
    for _, _, _, ad in window:
        # exactly the designed payload: UUID list, then service data
        designed = ad[3:] if flags else ad
        assert len(designed) == 28
        assert designed[:8] == bytes.fromhex("030368fd171668fd") and len(designed[8:]) == SERVICE_DATA_LEN
    report = linkability([(a, ad) for _, _, a, ad in window])
    assert report.violations == 0, report
    enables = [e for e in trace.enables if e[0] >= started]
    assert all(ok for _, _, ok in enables), "a rotation failed to enable advertising"
    return window


def gap_per_rotation(trace: ControllerTrace, ons: list[float]) -> list[float]:
    """For each rotation (from one advert's start to the next one's), the time no set was enabled."""
    periods = trace.off_air(since=ons[0])
    return [sum(g for t, g in periods if a <= t < b) for a, b in itertools.pairwise(ons)]


def figures(kind: str, per_rotation: list[float], overlaps: list[float]) -> str:
    ms = [g * 1000 for g in per_rotation]
    line = (
        f"{kind}: {len(ms)} rotations, {sum(1 for g in ms if g > 0)} with time off air: gap median "
        f"{statistics.median(ms):.1f} ms, max {max(ms):.1f} ms; "
    )
    if overlaps:
        line += f"overlap median {statistics.median(overlaps) * 1000:.1f} ms, max {max(overlaps) * 1000:.1f} ms; "
    return line + "gaps " + ", ".join(f"{g:.1f}" for g in ms) + " ms"


def test_rotation_in_sync_while_scanning_on_the_same_controller(vm_adapters: list[str], tmp_path: Path) -> None:
    """A legacy controller (the Pi's kind): pause scanning, unregister, register; never two sets at once."""
    trace, started, status = rotate(vm_adapters[0], tmp_path, "rot")
    assert status.get("make_before_break") is False
    window = check_on_air(trace, started, flags=True)
    assert {h for _, h, _, _ in window} == {LEGACY_SET}
    assert trace.overlaps(since=started) == []
    per_rotation = gap_per_rotation(trace, [t for t, _, _, _ in window])
    line = figures("legacy", per_rotation, [])
    print(line)
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    (out / "rotation-gaps.txt").write_text(line + "\n")
    gaps = per_rotation
    assert len(gaps) >= 20 and all(g > 0 for g in gaps), line
    # Issue 19 wants a median under 100 ms on a real controller. This VM emulates its CPU (TCG): most of
    # each gap is bluetoothd between MGMT Remove Advertising and Add Advertising (mostly its GetAll round trip
    # to the agent), 140-200 ms here, and one early rotation takes up to 1.3 s, so the bounds are this tier's.
    assert statistics.median(gaps) < 0.5 and max(gaps) < 3.0, line


def test_make_before_break_rotation_on_an_extended_controller(tmp_path: Path) -> None:
    """An extended-advertising controller: the next set is on air before the old one goes, each set under
    its own address with its own ID, so the air is never empty (issue 19's rotation gap, by design)."""
    adapters = os.environ.get("PROXITRACE_VM_EXTENDED_ADAPTERS", "").split()
    assert adapters, "no extended-advertising controller came up in the VM (hw/vm/run: PROXITRACE_VM_EXTENDED)"
    trace, started, status = rotate(adapters[0], tmp_path, "rot-ext")
    assert status.get("make_before_break") is True, status
    # in our runs the kernel wrote no Flags structure into the extended sets' data (28 bytes, not 31)
    window = check_on_air(trace, started, flags=False)
    assert len({h for _, h, _, _ in window}) >= 2, "the rotations did not alternate advertising sets"
    overlaps = trace.overlaps(since=started)
    per_rotation = gap_per_rotation(trace, [t for t, _, _, _ in window])
    line = figures("extended", per_rotation, overlaps)
    print(line)
    out = Path(os.environ.get("PROXITRACE_VM_OUT", tmp_path))
    (out / "rotation-gaps-extended.txt").write_text(line + "\n")
    assert len(per_rotation) >= 20, line
    assert len(overlaps) >= len(per_rotation) - 1, line  # (almost) every rotation overlapped two sets
    assert statistics.median(per_rotation) < 0.1, line


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

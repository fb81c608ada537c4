"""The wearable's button and LED on a real gpiochip of the VM's kernel: the real hid-cp2112 driver, bound to
a CP2112 emulated over /dev/uhid (``support.cp2112_uhid``, the hardware boundary), registers the chip; the
agent's GpioPanel requests its lines through the character device with libgpiod, and the consent loop
runs on it. The test presses the button by pulling the emulated pin low and reads the LED from the levels
the driver drove. The report itself is handed to a recorder here (the daemon test on the simulated BlueZ
sends it to a real backend); what this test adds is the kernel path of the button and the LED."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cp2112_uhid import Cp2112
from support.led_patterns import shown_by
from support.polling import until

from agent.feedback import LONG_PRESS_SECONDS, DeviceFacts, ReportPhase, Shown, Signal
from agent.wearable import GpioPanel, TanInbox, WearableService, WearableSettings

BUTTON, LED = 0, 1
TAN = "ABCD-EFGH-JKMN"


@pytest.fixture
def cp2112() -> Iterator[Cp2112]:
    for module in ("uhid", "hid-cp2112"):
        subprocess.run(["modprobe", module], check=True)
    device = Cp2112.plug()
    try:
        yield device
    finally:
        device.unplug()


async def led_shows(device: Cp2112, seconds: float) -> Shown | None:
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return shown_by(device.history(LED), start, seconds)[0]


async def test_the_long_press_on_a_real_gpiochip_sends_the_report_and_the_led_says_so(
    cp2112: Cp2112, tmp_path: Path
) -> None:
    chip = cp2112.chip()
    settings = WearableSettings(chip=chip, button_line=BUTTON, led_line=LED, tan_dir=tmp_path, consent_seconds=60)
    panel = GpioPanel.open(settings)
    sent: list[str] = []

    async def send(tan: str) -> None:
        sent.append(tan)

    facts = DeviceFacts(adapter_present=True, time_trusted=True, sync_failing=False, exposed=False)
    service = WearableService(settings, panel, TanInbox(tmp_path), lambda: facts, send)
    run = asyncio.create_task(service.run())
    try:
        assert await until(lambda: cp2112.output(LED) is not None, 30), cp2112.trace[-10:]
        assert await led_shows(cp2112, 6.0) == Shown(Signal.WORKING)
        (tmp_path / "report.proxitrace-tan").write_text(f'tan = "{TAN}"\n')
        assert await until(lambda: service.consent.phase is ReportPhase.PENDING, 15)
        assert await led_shows(cp2112, 2.0) == Shown(Signal.PENDING_CONSENT)
        assert sent == []
        cp2112.set_input(BUTTON, False)  # pressed: the button pulls the line to ground
        await asyncio.sleep(LONG_PRESS_SECONDS + 0.7)
        cp2112.set_input(BUTTON, True)
        assert await until(lambda: service.consent.phase is ReportPhase.SENT, 15), service.consent
        assert sent == [TAN]
        assert await led_shows(cp2112, 4.5) == Shown(Signal.REPORT_SENT)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        panel.close()

"""The button-consented report through the whole daemon, on the simulated BlueZ and a real backend on
127.0.0.1. This rig has no GPIO: the button and LED are ``ButtonAndLedDouble``, a TEST DOUBLE of the GPIO
panel (the real one is tested on the VM's kernel gpiochip in tests/bluez/test_gpio_real.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_calls import exchange
from support.backend_harness import backend_config, running_backend
from support.led_patterns import shown_by
from support.polling import until

from agent import signing_keys
from agent.clock import SystemClock
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.feedback import LONG_PRESS_SECONDS, ReportPhase, Shown, Signal
from agent.schemes.base import SchemeName
from agent.server.portal.service import ReportType as OfficerReportType
from agent.sim.harness import SimBed


class ButtonAndLedDouble:
    """TEST DOUBLE of ``agent.wearable.Panel``: the test presses the button, the LED's levels are recorded."""

    def __init__(self) -> None:
        self.levels: asyncio.Queue[tuple[bool, float]] = asyncio.Queue()
        self.led: list[tuple[float, bool]] = []
        self.closed = False

    def set_led(self, on: bool) -> None:
        self.led.append((time.monotonic(), on))

    async def next_level(self) -> tuple[bool, float]:
        return await self.levels.get()

    def close(self) -> None:
        self.closed = True

    async def hold(self, seconds: float) -> None:
        self.levels.put_nowait((True, time.monotonic()))
        await asyncio.sleep(seconds)
        self.levels.put_nowait((False, time.monotonic()))


async def led_shows(panel: ButtonAndLedDouble, seconds: float) -> Shown | None:
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return shown_by(panel.led, start, seconds)[0]


async def test_a_tan_file_and_a_long_press_send_the_report_and_no_press_sends_nothing(
    make_bed: Callable[..., SimBed], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bed = make_bed({"tick_seconds": 0.2, "adapters": [{"name": "hci0"}, {"name": "hci1", "x": 1.0}]})
    del bed
    key = ec.generate_private_key(ec.SECP256R1())
    media = tmp_path / "media"
    (media / "STICK").mkdir(parents=True)
    hook_log = tmp_path / "hook.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$PROXITRACE_EVENT:${{PROXITRACE_STATE:-none}}" >> {hook_log}\n')
    hook.chmod(0o755)
    async with running_backend(backend_config(tmp_path / "backend"), SystemClock(), key) as rb:
        config = config_from_dict(
            {
                "agent": {"scheme": "gaen", "accept_unsynchronised_clock_testbed": True},
                "ble": {"advertise_adapter": "hci0", "scan_adapters": ["hci0"]},
                "backend": {
                    "url": rb.url,
                    "public_key": signing_keys.public_key_pem(key.public_key()),
                    "dummy_traffic": False,
                },
                "notify": {"hook": str(hook)},
                "wearable": {"tan_dir": str(media), "chip": "gpiochip-unused", "consent_seconds": 10},
            }
        )
        panel = ButtonAndLedDouble()
        daemon = Daemon(config, tmp_path / "state", SystemClock(), panel=panel)
        caplog.set_level(logging.DEBUG)
        run = asyncio.create_task(daemon.run())
        try:
            assert await until(lambda: daemon.wearable is not None and daemon.edge is not None, 30)
            wearable = daemon.wearable
            assert wearable is not None
            assert await until(lambda: wearable.shown == Shown(Signal.WORKING), 30), wearable.shown
            assert await led_shows(panel, 6.0) == Shown(Signal.WORKING)

            portal = rb.backend.portal
            sent_tan = portal.issue_tan("ann", None, OfficerReportType.CONFIRMED_TEST, None, "").code
            (media / "STICK" / f"report{'.proxitrace-tan'}").write_text(f'tan = "{sent_tan}"\n')
            assert await until(lambda: wearable.consent.phase is ReportPhase.PENDING, 15)
            assert await led_shows(panel, 2.0) == Shown(Signal.PENDING_CONSENT)
            assert rb.backend.store.count_keys(SchemeName.GAEN) == 0  # nothing before the press

            await panel.hold(LONG_PRESS_SECONDS + 0.5)
            assert await until(lambda: wearable.consent.phase is ReportPhase.SENT, 30), wearable.consent
            assert rb.backend.store.count_keys(SchemeName.GAEN) > 0
            assert await led_shows(panel, 4.5) == Shown(Signal.REPORT_SENT)
            async with aiohttp.ClientSession() as http:
                status, _ = await exchange(http, rb, sent_tan)
                assert status != 200  # the TAN was spent by the report

                kept = rb.backend.store.count_keys(SchemeName.GAEN)
                declined_tan = portal.issue_tan("ann", None, OfficerReportType.CONFIRMED_TEST, None, "").code
                (media / f"second{'.proxitrace-tan'}").write_text(f'tan = "{declined_tan}"\n')
                assert await until(lambda: wearable.consent.phase is ReportPhase.PENDING, 15)
                await panel.hold(1.0)  # a short press is no consent
                assert await until(lambda: wearable.consent.phase is ReportPhase.DECLINED, 20)
                assert rb.backend.store.count_keys(SchemeName.GAEN) == kept
                status, _ = await exchange(http, rb, declined_tan)
                assert status == 200  # never redeemed: the officer's TAN is still good
        finally:
            daemon.stop()
            await asyncio.wait_for(run, 60)
    assert panel.closed

    def heard() -> list[list[str]]:
        return [line.split(":") for line in hook_log.read_text().split()] if hook_log.exists() else []

    assert await until(lambda: len([e for e, _ in heard() if e != "state"]) >= 4, 10)
    events = heard()
    reports = [e for e, _ in events if e != "state"]
    assert reports == ["report-pending", "report-sent", "report-pending", "report-declined"]
    # the hook also hears the first state (before the radio is up) and each change of it (up: ok), and every
    # event carries the brief's facts
    assert events[0][0] == "state" and ["state", "ok"] in events and all(state != "none" for _, state in events)
    for tan in (sent_tan, declined_tan):
        assert all(tan not in r.getMessage() for r in caplog.records)

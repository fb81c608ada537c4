"""The wearable's loop: the LED shows the daemon's state, a TAN file opens a report, a long press sends it.

Three small tasks share one ``Consent`` value: the LED task renders ``agent.feedback``'s pattern for the
daemon's facts, the button task turns the panel's level changes into a long press, and the inbox task
offers each new TAN file and lets an unanswered offer lapse. All their times are ``time.monotonic()``
(the kernel stamps button edges on that clock too), so a wall-clock step cannot shorten the consent
window or fake a long press.

The TAN is handed to ``send`` only after the press: until then nothing reaches the backend, not even
the TAN's redemption, so a report the wearer lets lapse leaves no trace anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from agent.feedback import (
    Button,
    Consent,
    DeviceFacts,
    Press,
    ReportPhase,
    Shown,
    button_check,
    button_deadline,
    button_level,
    consent_done,
    consent_expire,
    consent_offer,
    consent_press,
    level_at,
    pattern_for,
    shown_for,
)
from agent.wearable.gpio import Panel
from agent.wearable.inbox import TanFile, TanInbox
from agent.wearable.settings import WearableError, WearableSettings

log = logging.getLogger(__name__)

LED_RECHECK_SECONDS = 0.5
"""The LED task looks at the daemon's facts at least this often: a new state shows within half a second."""


class WearableService:
    """``facts`` gives the daemon's state (its report fields are this service's); ``send`` sends a report
    for a TAN and raises ``WearableError`` when it cannot; ``on_event`` hears report-pending, report-sent,
    report-failed and report-declined (the notify hook's events)."""

    def __init__(
        self,
        settings: WearableSettings,
        panel: Panel | None,
        inbox: TanInbox | None,
        facts: Callable[[], DeviceFacts],
        send: Callable[[str], Awaitable[None]],
        on_event: Callable[[str], None] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._panel = panel
        self._inbox = inbox
        self._facts = facts
        self._send = send
        self._on_event = on_event or (lambda event: None)
        self._now = now
        self.consent = Consent()
        self._pending: TanFile | None = None
        self._sending: asyncio.Task[None] | None = None
        self.shown: Shown | None = None

    def facts(self) -> DeviceFacts:
        """The daemon's facts with this service's report phase."""
        return replace(self._facts(), report=self.consent.phase, report_at=self.consent.phase_at)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._panel is not None:
                group.create_task(self._led())
                group.create_task(self._button())
            if self._inbox is not None:
                group.create_task(self._watch_inbox())

    # ---- the LED ------------------------------------------------------------------------------------

    async def _led(self) -> None:
        assert self._panel is not None
        since = self._now()
        lit: bool | None = None
        while True:
            now = self._now()
            shown = shown_for(self.facts(), now)
            if shown != self.shown:
                self.shown, since = shown, now
                log.debug("LED shows %s", shown.signal.value if shown.attention is None else shown.attention.value)
            on, left = level_at(pattern_for(shown), now - since)
            if on != lit:
                self._panel.set_led(on)
                lit = on
            await asyncio.sleep(min(left, LED_RECHECK_SECONDS) + 0.001)

    # ---- the button ---------------------------------------------------------------------------------

    async def _button(self) -> None:
        assert self._panel is not None
        state = Button()
        while True:
            deadline = button_deadline(state)
            timeout = None if deadline is None else max(0.0, deadline - self._now())
            try:
                pressed, at = await asyncio.wait_for(self._panel.next_level(), timeout)
                state = button_level(state, pressed, at)
            except TimeoutError:
                pass
            state, press = button_check(state, self._now())
            if press is not None:
                self._pressed(press)

    def _pressed(self, press: Press) -> None:
        before = self.consent
        self.consent = consent_press(before, press, self._now())
        if before.phase is not ReportPhase.PENDING or self.consent == before:
            log.info("button: long press, nothing waiting for consent")
            return
        pending, self._pending = self._pending, None
        if self.consent.phase is ReportPhase.DECLINED or pending is None:
            self._declined()
            return
        log.warning("button: long press, the wearer consented: sending the report")
        self._sending = asyncio.get_running_loop().create_task(self._report(pending))

    async def _report(self, pending: TanFile) -> None:
        try:
            await self._send(pending.tan)
        except WearableError as exc:
            log.error("the consented report was not sent: %s; it is offered again", exc)
            self.consent = consent_done(self.consent, False, self._now())
            if self._inbox is not None:
                self._inbox.forget(pending.path)
            self._on_event("report-failed")
            return
        self.consent = consent_done(self.consent, True, self._now())
        log.warning("report sent after the wearer's consent")
        self._on_event("report-sent")

    # ---- the TAN inbox ------------------------------------------------------------------------------

    async def _watch_inbox(self) -> None:
        assert self._inbox is not None
        while True:
            self._expire()
            if self.consent.phase not in (ReportPhase.PENDING, ReportPhase.SENDING):
                found = self._inbox.poll()
                if found is not None:
                    self._offer(found)
            wait = self._settings.tan_poll_seconds
            if self.consent.deadline is not None and self.consent.phase is ReportPhase.PENDING:
                wait = min(wait, max(0.0, self.consent.deadline - self._now()))
            await asyncio.sleep(wait + 0.001)

    def _offer(self, found: TanFile) -> None:
        offered = consent_offer(self.consent, self._now(), self._settings.consent_seconds)
        if offered is None:
            return
        if self._panel is None:
            log.error("TAN file %s: no button is configured (wearable.chip), so no consent can be given", found.path)
            return
        self.consent, self._pending = offered, found
        log.warning(
            "TAN file %s: a report waits for the wearer's long press (%.0f s); nothing is sent without it",
            found.path.name,
            self._settings.consent_seconds,
        )
        self._on_event("report-pending")

    def _expire(self) -> None:
        before = self.consent
        self.consent = consent_expire(before, self._now())
        if self.consent != before:
            self._pending = None
            self._declined()

    def _declined(self) -> None:
        log.warning("no long press within %.0f s: report declined, nothing sent", self._settings.consent_seconds)
        self._on_event("report-declined")

"""What a screenless wearable tells its wearer with one LED, and what one button press means: pure logic.

The wearable has no display and no keyboard. The LED must answer "is it working, was I exposed, is it
waiting for me?" at a glance, and the button must give a consent that cannot happen by accident (a strap
pressing it, a bump in a bag). Everything here is a pure function of facts the daemon already has and of
times passed in, so the patterns and the press rules are tested without a GPIO chip; ``agent.wearable``
drives the real lines with it.

Patterns are cycles of (LED on?, seconds) steps. They differ in rhythm, not in brightness or colour, so one
plain LED is enough and a wearer can tell them apart in daylight:

- working: one short blip every 5 s (a sign of life that costs almost no power);
- exposed: slow steady blinking (1 s on, 1 s off), until the exposure is over;
- report pending consent: fast blinking (0.15 s), the one pattern that asks for the button;
- report sent: on, with one short gap every 2 s, for ``REPORT_SENT_SHOW_SECONDS``;
- needs attention: bursts of quick blinks, the count saying why (2 no adapter, 3 no time sync, 4 sync
  failing), then a pause: the count can be read out on the phone to a helpdesk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LONG_PRESS_SECONDS = 3.0
"""How long the button must be held to consent to a report.

Long enough that a press by accident (a strap, a bag, a child's poke) does not send a diagnosis: those
last well under a second; short enough that a deliberate hold is not a chore. 3 s is the hold phones use
for a power-off or an SOS action, a gesture people already know means "I mean it"."""

DEBOUNCE_SECONDS = 0.03
"""Level changes closer than this to the previous one are contact bounce, not a press or a release.

Tactile switches bounce for a few milliseconds (up to about 20 ms for worn ones); a human cannot press and
release within 30 ms, so nothing real is lost."""

CONSENT_WINDOW_SECONDS = 600.0
"""How long a report waits for the wearer's long press after its TAN arrived; then it is declined.

Long enough for the health officer to explain what will be sent and for the wearer to decide; short enough
that a TAN card left in the device does not turn into a report hours later when someone leans on the
button."""

REPORT_SENT_SHOW_SECONDS = 3600.0
"""How long the LED says "report sent" after a report went out (then the usual state is shown again):
the wearer looks at it while the officer is still there, and once more later if unsure."""

Pattern = tuple[tuple[bool, float], ...]
"""A cycle of (LED on, seconds) steps, repeated from the moment the pattern is first shown."""


class Attention(StrEnum):
    """Why the device needs a person: each has its own blink count."""

    NO_ADAPTER = "no-adapter"
    NO_TIME_SYNC = "no-time-sync"
    SYNC_FAILING = "sync-failing"


class Signal(StrEnum):
    """The one thing the LED says at a time."""

    WORKING = "working"
    EXPOSED = "exposed"
    PENDING_CONSENT = "pending-consent"
    REPORT_SENT = "report-sent"
    NEEDS_ATTENTION = "needs-attention"


class ReportPhase(StrEnum):
    """Where the button-consented report is."""

    NONE = "none"
    PENDING = "pending"  # a TAN arrived; waiting for the long press
    SENDING = "sending"  # consent given; the report is on its way
    SENT = "sent"
    DECLINED = "declined"  # no press in time: nothing was sent
    FAILED = "failed"  # consent given, but the backend did not take it


@dataclass(frozen=True)
class DeviceFacts:
    """What the daemon knows that the LED shows; ``report_at`` is when ``report`` last changed."""

    adapter_present: bool
    time_trusted: bool
    sync_failing: bool
    exposed: bool
    report: ReportPhase = ReportPhase.NONE
    report_at: float | None = None


@dataclass(frozen=True)
class Shown:
    """What the LED shows: the signal, and the reason when it is a call for attention."""

    signal: Signal
    attention: Attention | None = None


def shown_for(facts: DeviceFacts, now: float) -> Shown:
    """The one signal for ``facts``, most urgent first.

    A report waiting for consent is shown above everything: it is the only state with a deadline the
    wearer can miss. Then a report just sent (the wearer looks while the officer is there). Then an
    exposure, which the wearer must not miss even on a device that also needs attention; then the device's
    own problems (a failed report is one: it did not go out); else working."""
    if facts.report in (ReportPhase.PENDING, ReportPhase.SENDING):
        return Shown(Signal.PENDING_CONSENT)
    if (
        facts.report is ReportPhase.SENT
        and facts.report_at is not None
        and now - facts.report_at < REPORT_SENT_SHOW_SECONDS
    ):
        return Shown(Signal.REPORT_SENT)
    if facts.exposed:
        return Shown(Signal.EXPOSED)
    if not facts.adapter_present:
        return Shown(Signal.NEEDS_ATTENTION, Attention.NO_ADAPTER)
    if not facts.time_trusted:
        return Shown(Signal.NEEDS_ATTENTION, Attention.NO_TIME_SYNC)
    if facts.sync_failing or facts.report is ReportPhase.FAILED:
        return Shown(Signal.NEEDS_ATTENTION, Attention.SYNC_FAILING)
    return Shown(Signal.WORKING)


_BLINK = 0.15  # one quick blink (on and off) in an attention burst
_ATTENTION_COUNT = {Attention.NO_ADAPTER: 2, Attention.NO_TIME_SYNC: 3, Attention.SYNC_FAILING: 4}
_ATTENTION_PAUSE = 2.0


def pattern_for(shown: Shown) -> Pattern:
    """The LED cycle for ``shown`` (see the module docstring for what each looks like)."""
    if shown.signal is Signal.WORKING:
        return ((True, 0.1), (False, 4.9))
    if shown.signal is Signal.EXPOSED:
        return ((True, 1.0), (False, 1.0))
    if shown.signal is Signal.PENDING_CONSENT:
        return ((True, 0.15), (False, 0.15))
    if shown.signal is Signal.REPORT_SENT:
        return ((True, 1.8), (False, 0.2))
    assert shown.attention is not None, "a call for attention names its reason"
    burst = ((True, _BLINK), (False, _BLINK)) * _ATTENTION_COUNT[shown.attention]
    return (*burst[:-1], (False, _BLINK + _ATTENTION_PAUSE))


def level_at(pattern: Pattern, elapsed: float) -> tuple[bool, float]:
    """The LED level ``elapsed`` seconds into ``pattern``, and the seconds until it next changes."""
    period = sum(seconds for _, seconds in pattern)
    t = elapsed % period
    for on, seconds in pattern:
        if t < seconds:
            return on, seconds - t
        t -= seconds
    return pattern[-1][0], period - t  # float rounding at the very end of a cycle


@dataclass(frozen=True)
class Button:
    """The button as a hold: held since ``pressed_at`` (None: not held); ``released_at`` is a release not yet
    older than ``DEBOUNCE_SECONDS`` (a bounce or a worn contact's glitch, if the press comes back in time);
    ``fired`` whether this hold already counted as a long press (a hold counts once, however long)."""

    pressed_at: float | None = None
    released_at: float | None = None
    fired: bool = False


class Press(StrEnum):
    LONG = "long"  # held for LONG_PRESS_SECONDS: consent


def button_level(state: Button, pressed: bool, at: float) -> Button:
    """The button after its level (True = pressed, whatever the wiring) changed at ``at``."""
    if pressed:
        if state.pressed_at is None:
            return Button(pressed_at=at)
        if state.released_at is not None:
            if at - state.released_at < DEBOUNCE_SECONDS:
                return Button(state.pressed_at, None, state.fired)  # a bounce: the hold goes on
            return Button(pressed_at=at)
        return state
    if state.pressed_at is not None and state.released_at is None:
        return Button(state.pressed_at, at, state.fired)
    return state


def button_check(state: Button, now: float) -> tuple[Button, Press | None]:
    """The hold as of ``now``: ended once released for ``DEBOUNCE_SECONDS``; a long press once held for
    ``LONG_PRESS_SECONDS`` (reported once per hold, while it is still held, so the LED answers at once)."""
    if state.pressed_at is None:
        return state, None
    if state.released_at is not None:
        return (Button(), None) if now - state.released_at >= DEBOUNCE_SECONDS else (state, None)
    if not state.fired and now - state.pressed_at >= LONG_PRESS_SECONDS:
        return Button(state.pressed_at, None, True), Press.LONG
    return state, None


def button_deadline(state: Button) -> float | None:
    """When ``button_check`` next may change something (None: not before the next level change)."""
    if state.pressed_at is None:
        return None
    if state.released_at is not None:
        return state.released_at + DEBOUNCE_SECONDS
    return None if state.fired else state.pressed_at + LONG_PRESS_SECONDS


@dataclass(frozen=True)
class Consent:
    """The report flow: a TAN arrives (``offer``), a long press within the window consents, else it is
    declined. ``phase_at`` is when the phase last changed; ``deadline`` is when a pending offer lapses."""

    phase: ReportPhase = ReportPhase.NONE
    phase_at: float | None = None
    deadline: float | None = None


def consent_offer(state: Consent, now: float, window: float = CONSENT_WINDOW_SECONDS) -> Consent | None:
    """A TAN arrived: wait for consent until ``now + window``; None while another report is in flight."""
    if state.phase in (ReportPhase.PENDING, ReportPhase.SENDING):
        return None
    return Consent(ReportPhase.PENDING, now, now + window)


def consent_press(state: Consent, press: Press, now: float) -> Consent:
    """A long press while a report is pending and in time is the consent (the report goes SENDING)."""
    if state.phase is ReportPhase.PENDING and press is Press.LONG and state.deadline is not None:
        if now < state.deadline:
            return Consent(ReportPhase.SENDING, now)
        return Consent(ReportPhase.DECLINED, state.deadline)
    return state


def consent_expire(state: Consent, now: float) -> Consent:
    """A pending report whose window has passed is declined: nothing is sent."""
    if state.phase is ReportPhase.PENDING and state.deadline is not None and now >= state.deadline:
        return Consent(ReportPhase.DECLINED, state.deadline)
    return state


def consent_done(state: Consent, sent: bool, now: float) -> Consent:
    """The consented report went out (``sent``) or the backend refused it."""
    if state.phase is not ReportPhase.SENDING:
        return state
    return Consent(ReportPhase.SENT if sent else ReportPhase.FAILED, now)

"""The wearable's LED patterns and button rules, as pure functions of facts and times."""

import itertools

import pytest

from agent.feedback import (
    CONSENT_WINDOW_SECONDS,
    DEBOUNCE_SECONDS,
    LONG_PRESS_SECONDS,
    REPORT_SENT_SHOW_SECONDS,
    Attention,
    Button,
    Consent,
    DeviceFacts,
    Press,
    ReportPhase,
    Shown,
    Signal,
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

FINE = DeviceFacts(adapter_present=True, time_trusted=True, sync_failing=False, exposed=False)


def facts(**changes: object) -> DeviceFacts:
    return DeviceFacts(**{**FINE.__dict__, **changes})  # type: ignore[arg-type]


def test_a_healthy_device_shows_working() -> None:
    assert shown_for(FINE, 0.0) == Shown(Signal.WORKING)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"adapter_present": False}, Attention.NO_ADAPTER),
        ({"time_trusted": False}, Attention.NO_TIME_SYNC),
        ({"sync_failing": True}, Attention.SYNC_FAILING),
        ({"report": ReportPhase.FAILED, "report_at": 0.0}, Attention.SYNC_FAILING),
    ],
)
def test_each_problem_calls_for_attention_with_its_reason(changes: dict[str, object], reason: Attention) -> None:
    assert shown_for(facts(**changes), 10.0) == Shown(Signal.NEEDS_ATTENTION, reason)


def test_an_exposure_is_shown_even_on_a_device_that_needs_attention() -> None:
    assert shown_for(facts(exposed=True, sync_failing=True, adapter_present=False), 0.0).signal is Signal.EXPOSED


@pytest.mark.parametrize("phase", [ReportPhase.PENDING, ReportPhase.SENDING])
def test_a_report_waiting_for_the_wearer_is_shown_above_everything(phase: ReportPhase) -> None:
    worst = facts(exposed=True, adapter_present=False, time_trusted=False, report=phase, report_at=0.0)
    assert shown_for(worst, 1.0).signal is Signal.PENDING_CONSENT


def test_report_sent_is_shown_for_its_time_then_the_usual_state() -> None:
    sent = facts(exposed=True, report=ReportPhase.SENT, report_at=100.0)
    assert shown_for(sent, 100.0 + REPORT_SENT_SHOW_SECONDS - 1).signal is Signal.REPORT_SENT
    assert shown_for(sent, 100.0 + REPORT_SENT_SHOW_SECONDS).signal is Signal.EXPOSED


def test_a_declined_report_leaves_the_usual_state() -> None:
    assert shown_for(facts(report=ReportPhase.DECLINED, report_at=0.0), 1.0).signal is Signal.WORKING


ALL_SHOWN = [Shown(s) for s in Signal if s is not Signal.NEEDS_ATTENTION] + [
    Shown(Signal.NEEDS_ATTENTION, a) for a in Attention
]


def test_every_signal_and_attention_reason_has_its_own_pattern() -> None:
    patterns = [pattern_for(s) for s in ALL_SHOWN]
    assert len(set(patterns)) == len(patterns)


def _on_times(pattern: tuple[tuple[bool, float], ...], seconds: float, step: float = 0.05) -> list[bool]:
    return [level_at(pattern, i * step)[0] for i in range(int(seconds / step))]


def test_patterns_look_different_over_ten_seconds_not_only_on_paper() -> None:
    """Sampled at 20 Hz for 10 s (what an eye sees), no two patterns give the same on/off sequence."""
    seen = {s: tuple(_on_times(pattern_for(s), 10.0)) for s in ALL_SHOWN}
    for a, b in itertools.combinations(ALL_SHOWN, 2):
        assert seen[a] != seen[b], (a, b)


def test_attention_bursts_count_the_reason() -> None:
    def bursts(reason: Attention) -> int:
        return sum(1 for on, _ in pattern_for(Shown(Signal.NEEDS_ATTENTION, reason)) if on)

    assert [bursts(a) for a in (Attention.NO_ADAPTER, Attention.NO_TIME_SYNC, Attention.SYNC_FAILING)] == [2, 3, 4]


def test_level_at_walks_the_cycle_and_says_when_it_changes() -> None:
    pattern = ((True, 0.5), (False, 1.5))
    assert level_at(pattern, 0.0) == (True, 0.5)
    assert level_at(pattern, 0.75) == (False, 1.25)
    on, left = level_at(pattern, 2.25)  # the second cycle
    assert on and left == pytest.approx(0.25)


def test_working_is_dark_most_of_the_time() -> None:
    """A sign of life, not a lamp: the heartbeat is on for at most a few percent of the time."""
    pattern = pattern_for(Shown(Signal.WORKING))
    assert sum(s for on, s in pattern if on) / sum(s for _, s in pattern) <= 0.05


# ---- the button -------------------------------------------------------------------------------------


def hold(start: float, until: float) -> tuple[Button, list[Press]]:
    """Press at ``start`` and check every 10 ms up to ``until``, collecting what was reported."""
    state = button_level(Button(), True, start)
    presses = []
    t = start
    while t <= until:
        state, press = button_check(state, t)
        if press:
            presses.append(press)
        t += 0.01
    return state, presses


def test_a_hold_of_the_long_press_time_is_a_long_press_reported_once() -> None:
    state, presses = hold(10.0, 10.0 + LONG_PRESS_SECONDS + 5)
    assert presses == [Press.LONG]
    assert state.fired


def test_a_hold_just_short_of_the_long_press_time_is_nothing() -> None:
    state, presses = hold(10.0, 10.0 + LONG_PRESS_SECONDS - 0.05)
    assert presses == []
    state = button_level(state, False, 10.0 + LONG_PRESS_SECONDS - 0.04)
    for t in (10.0 + LONG_PRESS_SECONDS, 10.0 + LONG_PRESS_SECONDS + 10):
        state, press = button_check(state, t)
        assert press is None
    assert state == Button()


def test_contact_bounce_does_not_break_a_hold() -> None:
    state = button_level(Button(), True, 0.0)
    for i in range(5):  # a bouncing contact: releases and presses a few ms apart
        state = button_level(state, False, 0.002 + i * 0.004)
        state, _ = button_check(state, 0.003 + i * 0.004)
        state = button_level(state, True, 0.004 + i * 0.004)
    state, press = button_check(state, LONG_PRESS_SECONDS)
    assert press is Press.LONG


def test_a_release_that_lasts_ends_the_hold_and_the_count_starts_again() -> None:
    state = button_level(Button(), True, 0.0)
    state = button_level(state, False, 2.0)
    state, _ = button_check(state, 2.0 + 2 * DEBOUNCE_SECONDS)
    assert state == Button()
    state = button_level(state, True, 2.5)
    state, press = button_check(state, LONG_PRESS_SECONDS + 0.1)  # 3.1 s after the first press
    assert press is None
    assert button_deadline(state) == pytest.approx(2.5 + LONG_PRESS_SECONDS)


def test_a_quick_tap_whose_release_came_within_the_debounce_time_still_ends() -> None:
    """A tap of 20 ms: the release must not be lost, or the button would count as held forever."""
    state = button_level(Button(), True, 0.0)
    state = button_level(state, False, 0.02)
    assert button_deadline(state) == pytest.approx(0.02 + DEBOUNCE_SECONDS)
    state, press = button_check(state, 10.0)
    assert (state, press) == (Button(), None)


def test_the_deadline_says_when_a_long_press_is_due() -> None:
    state = button_level(Button(), True, 4.0)
    assert button_deadline(state) == 4.0 + LONG_PRESS_SECONDS
    state, _ = button_check(state, 4.0 + LONG_PRESS_SECONDS)
    assert button_deadline(state) is None  # fired: nothing more until it is released


# ---- consent ----------------------------------------------------------------------------------------


def test_a_long_press_in_time_consents_then_the_report_is_sent() -> None:
    pending = consent_offer(Consent(), 100.0)
    assert pending is not None and pending.phase is ReportPhase.PENDING
    assert pending.deadline == 100.0 + CONSENT_WINDOW_SECONDS
    sending = consent_press(pending, Press.LONG, 150.0)
    assert sending.phase is ReportPhase.SENDING
    assert consent_done(sending, True, 160.0) == Consent(ReportPhase.SENT, 160.0)
    assert consent_done(sending, False, 160.0).phase is ReportPhase.FAILED


def test_no_press_in_time_declines() -> None:
    pending = consent_offer(Consent(), 0.0, window=60.0)
    assert pending is not None
    assert consent_expire(pending, 59.9) == pending
    assert consent_expire(pending, 60.0) == Consent(ReportPhase.DECLINED, 60.0)


def test_a_press_after_the_window_declines_and_sends_nothing() -> None:
    pending = consent_offer(Consent(), 0.0, window=60.0)
    assert pending is not None
    assert consent_press(pending, Press.LONG, 61.0).phase is ReportPhase.DECLINED


def test_a_press_with_nothing_pending_changes_nothing() -> None:
    for state in (Consent(), Consent(ReportPhase.SENT, 1.0), Consent(ReportPhase.DECLINED, 1.0)):
        assert consent_press(state, Press.LONG, 5.0) == state


def test_a_second_tan_while_one_is_in_flight_is_refused() -> None:
    pending = consent_offer(Consent(), 0.0)
    assert pending is not None
    assert consent_offer(pending, 1.0) is None
    assert consent_offer(consent_press(pending, Press.LONG, 2.0), 3.0) is None
    declined = consent_expire(pending, CONSENT_WINDOW_SECONDS)
    assert consent_offer(declined, CONSENT_WINDOW_SECONDS + 1) is not None

"""Whether the wall clock can be trusted, and when it jumped: a pure judgement over facts read elsewhere.

A Pi has no real-time clock. Booted without network it believes it is hours or days in the past, and every
ID it derives and every sighting it stamps is then wrong — worse than nothing, because a wrong day key
advertised is a day key someone may later report. So the daemon advertises, records and matches only while
this module says the time is trusted: the clock is known synchronised (the kernel's NTP state, see
``agent.timesource``) and not before the package's own build time (a clock can be "synchronised" to a
wrong source, but nothing built today runs in the past).

A jump is found by comparing how far the wall clock moved with how far the monotonic clock moved between
two looks: the monotonic clock never jumps, so any difference beyond ``JUMP_TOLERANCE_SECONDS`` is the wall
clock being stepped (an NTP step after boot, an operator's ``date -s``). Slewing (chrony, timesyncd) moves
the wall clock by at most 0.5 ms per second, far inside the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

JUMP_TOLERANCE_SECONDS = 5.0
"""A step larger than this re-derives the live ID and closes the open sighting windows.

Smaller than the shortest ID lifetime that matters (DP-3T's 15 min epochs) by far, larger than the error a
loaded 2-core machine adds between two looks (a late wake-up moves both clocks alike)."""


class TimeTrust(StrEnum):
    """Why the time is (not) trusted: one word for ``status``, the status file and an LED pattern.

    A ``StrEnum`` so the status file's JSON carries the word itself."""

    SYNCHRONISED = "synchronised"
    UNSYNCHRONISED = "unsynchronised"  # the kernel says no NTP client has set the clock
    BEFORE_BUILD = "before-build"  # the clock reads earlier than this package was built
    ACCEPTED_UNSYNCHRONISED = "accepted-unsynchronised"  # the desk test-bed setting is on
    SIMULATED = "simulated"  # an accelerated or manual clock: the test-bed's time is the truth

    @property
    def trusted(self) -> bool:
        return self in (TimeTrust.SYNCHRONISED, TimeTrust.ACCEPTED_UNSYNCHRONISED, TimeTrust.SIMULATED)


@dataclass(frozen=True)
class TimeFacts:
    """One look at the clocks, as the time source read them.

    ``synchronised`` None means the source cannot tell (and is then simulated time: trusted by
    construction). ``not_before`` is the earliest believable time (the build time), or None for none.
    """

    wall: float
    monotonic: float
    synchronised: bool | None
    not_before: float | None


@dataclass(frozen=True)
class TimeState:
    """The daemon's time state as published in its status snapshot (``AgentStatus.time``)."""

    trust: TimeTrust
    checked_at: float  # wall time of the last look
    jumps: int = 0
    last_jump_seconds: float | None = None  # signed: positive forward
    last_jump_at: float | None = None  # wall time just after the last jump
    trusted_since: float | None = None

    @property
    def trusted(self) -> bool:
        return self.trust.trusted


@dataclass(frozen=True)
class Jump:
    """A step of the wall clock: ``seconds`` signed (positive forward); ``last_good`` the wall time just before."""

    seconds: float
    last_good: float


def judge(facts: TimeFacts, accept_unsynchronised: bool) -> TimeTrust:
    """Trust from one look. The build-time floor wins over the desk setting: a clock before the build is
    wrong even on a desk, and the accelerated test-bed clock is simulated, not a system clock."""
    if facts.synchronised is None:
        return TimeTrust.SIMULATED
    if facts.not_before is not None and facts.wall < facts.not_before:
        return TimeTrust.BEFORE_BUILD
    if facts.synchronised:
        return TimeTrust.SYNCHRONISED
    return TimeTrust.ACCEPTED_UNSYNCHRONISED if accept_unsynchronised else TimeTrust.UNSYNCHRONISED


class TimeWatch:
    """Successive looks at the clocks folded into a ``TimeState``; reports each jump once."""

    def __init__(self, accept_unsynchronised: bool, tolerance: float = JUMP_TOLERANCE_SECONDS) -> None:
        self.accept_unsynchronised = accept_unsynchronised
        self.tolerance = tolerance
        self._last: TimeFacts | None = None
        self.state: TimeState | None = None

    def observe(self, facts: TimeFacts) -> Jump | None:
        """Fold in one look; the jump since the previous look, if the wall clock was stepped."""
        jump = None
        prev = self._last
        if prev is not None:
            drift = (facts.wall - prev.wall) - (facts.monotonic - prev.monotonic)
            if abs(drift) > self.tolerance:
                jump = Jump(seconds=drift, last_good=prev.wall + (facts.monotonic - prev.monotonic))
        self._last = facts
        trust = judge(facts, self.accept_unsynchronised)
        old = self.state
        since = old.trusted_since if old is not None and old.trusted and trust.trusted and jump is None else None
        self.state = TimeState(
            trust=trust,
            checked_at=facts.wall,
            jumps=(old.jumps if old else 0) + (jump is not None),
            last_jump_seconds=jump.seconds if jump else (old.last_jump_seconds if old else None),
            last_jump_at=facts.wall if jump else (old.last_jump_at if old else None),
            trusted_since=since if since is not None else (facts.wall if trust.trusted else None),
        )
        return jump

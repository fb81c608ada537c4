"""A test double for the kernel's clock state (``adjtimex``'s STA_UNSYNC and a stepped wall clock).

Named as a double: the kernel's NTP flag and the system clock cannot be changed here without
CAP_SYS_TIME (and changing them would disturb every other process on the machine). The wall time is a
``ManualClock`` the daemon also uses, so the daemon's IDs and sighting stamps follow the stepped clock.
"""

from __future__ import annotations

from agent.clock import ManualClock
from agent.timetrust import TimeFacts


class SteppedKernelTime:
    """The daemon's ``TimeSource`` for tests: a wall clock an NTP client may step, and a monotonic clock
    that does not move with a step (it is the wall time minus every step so far)."""

    def __init__(self, clock: ManualClock, not_before: float, synchronised: bool = False) -> None:
        self.clock = clock
        self.not_before = not_before
        self.synchronised = synchronised
        self._stepped = 0.0

    def step(self, seconds: float) -> None:
        """Step the wall clock as ``chronyd -q``/timesyncd's first sync or ``date -s`` would."""
        self.clock.set(self.clock.now() + seconds)
        self._stepped += seconds

    def facts(self) -> TimeFacts:
        now = self.clock.now()
        return TimeFacts(now, now - self._stepped, self.synchronised, self.not_before)

"""Where the facts about time come from: the kernel's NTP state and the package's build time (an I/O edge).

Signal chosen: the kernel's own clock status, ``adjtimex(2)`` with ``STA_UNSYNC`` clear. Every NTP client
that disciplines the system clock — chrony, systemd-timesyncd, ntpd, openntpd — clears it when it has set
the time, and the kernel sets it again by itself when no client has updated it for long; so it is one
signal whichever client a distribution ships, needs no D-Bus or daemon-specific file, and no privilege to
read. (systemd-timesyncd's ``/run/systemd/timesync/synchronized`` exists only with timesyncd; chrony's
``chronyc tracking`` needs its socket.) Without an NTP client (a desk rig, a container) the flag stays set:
``[agent] accept_unsynchronised_clock_testbed = true`` accepts such a clock, named so nobody sets it in the
field by accident.

Build time: the newest modification time among the package's own modules. It works the same from a source
checkout, a wheel (zip entries keep their times) and the Debian package (dpkg clamps them to the changelog
date), with nothing written at build.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from pathlib import Path
from typing import Protocol

from agent.clock import Clock, SystemClock
from agent.timetrust import TimeFacts

STA_UNSYNC = 0x0040  # include/uapi/linux/timex.h
TIME_ERROR = 5  # adjtimex's return value for "clock not synchronised"
_PACKAGE = Path(__file__).resolve().parent


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` up to ``status``; the tail is room for the kernel to write into.

    ``c_long`` follows the platform's C ``long``, so the same layout holds on 64-bit x86/arm64 and 32-bit
    armhf (Pi OS), whose libc ``adjtimex`` takes the native struct."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


class TimeSource(Protocol):
    """One look at the clocks; the daemon's gate reads time only through this."""

    def facts(self) -> TimeFacts: ...


def kernel_synchronised(libc: ctypes.CDLL | None = None) -> bool:
    """The kernel's NTP state, read-only (``modes`` 0 needs no privilege): True when an NTP client set it."""
    libc = libc or _libc()
    tx = _Timex()
    result = libc.adjtimex(ctypes.byref(tx))
    if result < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    return result != TIME_ERROR and not tx.status & STA_UNSYNC


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def build_time(package: Path = _PACKAGE) -> float:
    """The newest modification time among the package's own ``.py`` files: nothing built then runs earlier."""
    return max(p.stat().st_mtime for p in package.rglob("*.py"))


class KernelTimeSource:
    """The real system: the wall clock, the monotonic clock, the kernel's NTP flag and the build-time floor."""

    def __init__(self, not_before: float | None = None) -> None:
        self._not_before = build_time() if not_before is None else not_before
        self._libc = _libc()

    def facts(self) -> TimeFacts:
        """A kernel that refuses the call (a seccomp filter) is read as "not synchronised": the gate
        then stays shut, which is the safe side, and ``status`` says why."""
        try:
            synchronised = kernel_synchronised(self._libc)
        except OSError:
            synchronised = False
        return TimeFacts(time.time(), time.monotonic(), synchronised, self._not_before)


class SimulatedTimeSource:
    """An accelerated or manual clock: its time is the test-bed's truth, so there is no sync to wait for.

    The monotonic reading is the clock itself, so a simulated clock never shows a jump: the test-bed
    decides its time and the agents under it must follow, not second-guess it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def facts(self) -> TimeFacts:
        now = self._clock.now()
        return TimeFacts(now, now, None, None)


def time_source_for(clock: Clock) -> TimeSource:
    """The kernel for the system clock, the clock itself for a simulated one."""
    return KernelTimeSource() if isinstance(clock, SystemClock) else SimulatedTimeSource(clock)

"""What ``proxitrace status`` shows: a snapshot the daemon writes and any process can read.

The daemon owns the store and the radios; status must work while it runs and must not disturb it. So the
daemon publishes a small JSON file (atomically: write, fsync, rename) every few seconds, and the command
only reads it. It never carries an ID, a key or an address — only counts, times and states.

The file is padded to whole 4 KiB blocks: when the disk is full the atomic replace cannot get a block for
its temporary file, and the snapshot is then rewritten in place inside the blocks it already holds — the
moment an operator most needs ``status`` ("disk full, N windows held in memory") is that one.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path

from agent.timetrust import TimeState, TimeTrust

STATUS_FILE = "status.json"
BLOCK = 4096


@dataclass(frozen=True)
class AdapterStatus:
    name: str
    present: bool
    advertising: bool
    scanning: bool
    last_heard_at: float | None = None
    devices_removed: int = 0  # BlueZ devices the scanner had forgotten: more fresh addresses than a crowd has
    devices_left: int = 0  # ...and those it left to BlueZ's timeout because the bus was saturated
    devices_cached_max: int = 0  # the most devices the scanner's bleak held at once (bounded by MAX_DEVICES)


@dataclass(frozen=True)
class TaskStatus:
    name: str
    running: bool
    restarts: int
    last_error: str | None = None


@dataclass(frozen=True)
class AgentStatus:
    pid: int
    started_at: float
    updated_at: float
    scheme: str
    advertising: bool
    seconds_since_rotation: float | None
    rotation_failures: int
    sightings_per_minute: float
    distinct_ids_15min: int
    db_size_bytes: int
    last_sync_at: float | None
    last_sync_ok: bool | None
    exposure: str  # "none", "exposed"
    adapters: tuple[AdapterStatus, ...] = ()
    tasks: tuple[TaskStatus, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    advertising_problem: str | None = None  # why advertising is off: the advertiser's note and last error
    make_before_break: bool | None = None  # the last rotation overlapped two sets (extended advertising)
    store_problem: str | None = None  # why sightings cannot be written now (disk full, read-only)
    unwritten_windows: int = 0  # sighting windows held in memory until the store takes them
    unwritten_dropped: int = 0  # ...and those lost because that memory was full
    flood_dropped: int = 0  # callbacks of new IDs refused by the flood cap
    asyncio_tasks: int = 0  # the daemon's event loop: a number that grows is a leak
    time: TimeState | None = None  # None until the daemon's first look at the clocks
    report_pending: bool = False  # a redeemed TAN's report waits for the wearer's consent (or a retry)
    needs_registration: bool = False  # EBID: no pseudonym and no capability to get one without a person
    registering_again: bool = False  # EBID: pseudonym erased, a new one comes within the re-registration spread


def write_status(directory: Path, status: AgentStatus) -> Path:
    path = directory / STATUS_FILE
    data = json.dumps(asdict(status), indent=1).encode()
    data += b" " * (-len(data) % BLOCK)  # JSON allows trailing whitespace
    tmp = directory / f".{STATUS_FILE}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not _rewrite_in_place(path, data):
            raise
        return path
    os.replace(tmp, path)
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _rewrite_in_place(path: Path, data: bytes) -> bool:
    """Disk full: overwrite the old snapshot within its own blocks (not atomic, but it needs no new block)."""
    try:
        size = path.stat().st_size
        if size < len(data):
            return False
        fd = os.open(path, os.O_WRONLY)
        try:
            _write_all(fd, data + b" " * (size - len(data)))
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def read_status(directory: Path) -> AgentStatus | None:
    """The last published snapshot, or None when there is none (or it is unreadable)."""
    try:
        raw = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        raw["adapters"] = tuple(AdapterStatus(**a) for a in raw.get("adapters", ()))
        raw["tasks"] = tuple(TaskStatus(**t) for t in raw.get("tasks", ()))
        raw["notes"] = tuple(raw.get("notes", ()))
        if raw.get("time") is not None:
            raw["time"] = TimeState(**{**raw["time"], "trust": TimeTrust(raw["time"]["trust"])})
        known = {f.name for f in fields(AgentStatus)}
        return AgentStatus(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError):
        return None


def render_status(s: AgentStatus, now: float, pid_alive: bool) -> str:
    def ago(t: float | None) -> str:
        return "never" if t is None else f"{max(0.0, now - t):.0f} s ago"

    state = (
        "running"
        if pid_alive and now - s.updated_at < STALE_SECONDS
        else ("NOT RUNNING" if not pid_alive else f"stale (last update {ago(s.updated_at)})")
    )
    lines = [
        f"agent      {state} (pid {s.pid}, up {max(0.0, now - s.started_at) / 3600:.1f} h), scheme {s.scheme}",
        f"advertising {'on' if s.advertising else 'OFF'}"
        + (f" ({s.advertising_problem})" if s.advertising_problem and not s.advertising else "")
        + "; last rotation "
        + ("never" if s.seconds_since_rotation is None else f"{s.seconds_since_rotation:.0f} s ago")
        + (f"; {s.rotation_failures} failed registrations" if s.rotation_failures else ""),
        f"heard      {s.sightings_per_minute:.1f} sightings/min, {s.distinct_ids_15min} distinct IDs in 15 min",
        f"store      {s.db_size_bytes / 1_048_576:.1f} MiB"
        + (
            f"; CANNOT WRITE ({s.store_problem}): {s.unwritten_windows} windows held in memory"
            + (f", {s.unwritten_dropped} dropped" if s.unwritten_dropped else "")
            if s.store_problem
            else ""
        ),
        f"sync       last {ago(s.last_sync_at)}"
        + ("" if s.last_sync_ok is None else (" (ok)" if s.last_sync_ok else " (FAILED)")),
        f"exposure   {s.exposure}",
    ]
    if s.time is not None:
        lines.append(f"time       {render_time(s.time, now)}")
    for a in s.adapters:
        flags = ", ".join(f for f, on in (("advertising", a.advertising), ("scanning", a.scanning)) if on)
        lines.append(
            f"adapter    {a.name}: {'present' if a.present else 'MISSING'}"
            + (f", {flags}" if flags else "")
            + f"; last heard {ago(a.last_heard_at)}"
            + (
                f"; {a.devices_removed} devices dropped from BlueZ (flood of addresses, at most "
                f"{a.devices_cached_max} held at once)"
                if a.devices_removed
                else ""
            )
            + (f", {a.devices_left} left to its timeout (bus saturated)" if a.devices_left else "")
        )
    for t in s.tasks:
        if t.restarts or not t.running:
            lines.append(
                f"task       {t.name}: {'running' if t.running else 'STOPPED'}, {t.restarts} restarts"
                + (f", last error: {t.last_error}" if t.last_error else "")
            )
    if s.flood_dropped:
        lines.append(f"flood      {s.flood_dropped} sightings of new IDs past the per-minute cap dropped")
    lines.extend(f"note       {n}" for n in s.notes)
    return "\n".join(lines)


def render_time(t: TimeState, now: float) -> str:
    """One line: whether the clock is trusted (and so whether the radio runs), and the last jump."""
    words = {
        TimeTrust.SYNCHRONISED: "synchronised",
        TimeTrust.SIMULATED: "simulated clock",
        TimeTrust.ACCEPTED_UNSYNCHRONISED: "NOT synchronised, accepted (desk test-bed setting)",
        TimeTrust.UNSYNCHRONISED: "NOT synchronised: not advertising, recording or matching until it is",
        TimeTrust.BEFORE_BUILD: "BEFORE the build time: not advertising, recording or matching until it is set",
    }
    line = words[t.trust]
    if t.last_jump_seconds is not None and t.last_jump_at is not None:
        line += (
            f"; {t.jumps} clock jump(s), last {t.last_jump_seconds:+.0f} s, {max(0.0, now - t.last_jump_at):.0f} s ago"
        )
    return line


STALE_SECONDS = 60.0
"""A snapshot older than this is stale: the daemon publishes one every 5 s (``agent.daemon.STATUS_SECONDS``)."""


class BriefState(StrEnum):
    """The one word ``status --brief`` leads with, most urgent first: what a wearable's LED or display
    shows, and what a health check acts on."""

    NEEDS_ATTENTION = "needs-attention"  # the device is not doing its job: ``why`` says what is wrong
    REPORT_PENDING = "report-pending"  # a report waits for the wearer's consent
    EXPOSED = "exposed"
    OK = "ok"


EXIT_NEEDS_ATTENTION = 1
EXIT_NOT_RUNNING = 3  # as plain ``status`` exits when the daemon is not running


@dataclass(frozen=True)
class Brief:
    state: BriefState
    why: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]
    exit_code: int

    @property
    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.fields)

    def environment(self) -> dict[str, str]:
        """The same facts for the notify hook (``PROXITRACE_STATE``, ``PROXITRACE_WHY``, ...): a display or
        LED script reads them from its environment instead of parsing the line."""
        return {f"PROXITRACE_{k.upper()}": v for k, v in self.fields}


def brief_status(s: AgentStatus | None, now: float, pid_alive: bool) -> Brief:
    """``status --brief``: the state, why it needs attention, and a few key=value facts on one line, from
    the same snapshot ``status`` renders. Words without spaces, so a shell ``read`` or a split on blanks
    and "=" is all a companion needs."""
    if s is None:
        return Brief(
            BriefState.NEEDS_ATTENTION,
            ("no-status",),
            (("state", BriefState.NEEDS_ATTENTION.value), ("why", "no-status")),
            EXIT_NEEDS_ATTENTION,
        )
    why: list[str] = []
    if not pid_alive:
        why.append("not-running")
    elif now - s.updated_at >= STALE_SECONDS:
        why.append("stale-status")
    trusted = s.time is not None and s.time.trusted
    if s.time is not None and not trusted:
        why.append(f"time-{s.time.trust.value}")
    if s.adapters and not any(a.present for a in s.adapters):
        why.append("no-adapter")
    if trusted and not s.advertising and not s.registering_again:  # no EBIDs until then, by design
        why.append("not-advertising")
    if s.store_problem:
        why.append("store-cannot-write")
    if s.needs_registration:
        why.append("not-registered")
    elif s.last_sync_ok is False:
        why.append("sync-failing")
    if why:
        state = BriefState.NEEDS_ATTENTION
    elif s.report_pending:
        state = BriefState.REPORT_PENDING
    elif s.exposure == "exposed":
        state = BriefState.EXPOSED
    else:
        state = BriefState.OK
    sync_age = "never" if s.last_sync_at is None else f"{max(0.0, now - s.last_sync_at):.0f}"
    fields_ = (
        ("state", state.value),
        ("why", ",".join(why) or "-"),
        ("advertising", "on" if s.advertising else "off"),
        ("last_sync_age_s", sync_age),
        ("sync", "-" if s.last_sync_ok is None else ("ok" if s.last_sync_ok else "failed")),
        ("time", "-" if s.time is None else s.time.trust.value),
        ("time_trusted", "yes" if trusted else "no"),
        ("exposure", s.exposure),
        ("report_pending", "yes" if s.report_pending else "no"),
        ("scheme", s.scheme),
    )
    code = 0 if not why else (EXIT_NOT_RUNNING if "not-running" in why else EXIT_NEEDS_ATTENTION)
    return Brief(state, tuple(why), fields_, code)

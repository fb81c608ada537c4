"""The time gate's judgement and jump detection, driven by a manual clock stepped forward and back."""

from pathlib import Path

from agent.clock import DAY, ManualClock
from agent.status import AgentStatus, read_status, render_status, write_status
from agent.timesource import STA_UNSYNC, SimulatedTimeSource, build_time, kernel_synchronised
from agent.timetrust import JUMP_TOLERANCE_SECONDS, TimeFacts, TimeTrust, TimeWatch, judge

BUILD = 1_790_000_000.0


class SteppedSystem:
    """A system clock as the kernel source would read it: a wall clock that can be stepped (the manual
    clock) and a monotonic clock that only runs forward with elapsed time."""

    def __init__(self, start: float, synchronised: bool = True) -> None:
        self.wall = ManualClock(start)
        self.mono = 1000.0
        self.synchronised = synchronised

    def elapse(self, seconds: float) -> None:
        self.wall.set(self.wall.now() + seconds)
        self.mono += seconds

    def facts(self) -> TimeFacts:
        return TimeFacts(self.wall.now(), self.mono, self.synchronised, BUILD)


def test_judge_needs_sync_and_a_time_after_the_build() -> None:
    assert judge(TimeFacts(BUILD + 1, 0, True, BUILD), False) is TimeTrust.SYNCHRONISED
    assert judge(TimeFacts(BUILD + 1, 0, False, BUILD), False) is TimeTrust.UNSYNCHRONISED
    assert judge(TimeFacts(BUILD + 1, 0, False, BUILD), True) is TimeTrust.ACCEPTED_UNSYNCHRONISED
    assert judge(TimeFacts(BUILD - DAY, 0, True, BUILD), True) is TimeTrust.BEFORE_BUILD
    assert judge(TimeFacts(5.0, 5.0, None, None), False) is TimeTrust.SIMULATED
    assert [t.trusted for t in TimeTrust] == [True, False, False, True, True]


def test_a_day_behind_then_synchronised_by_a_forward_step() -> None:
    system = SteppedSystem(BUILD - DAY + 3600, synchronised=False)
    watch = TimeWatch(accept_unsynchronised=False)
    assert watch.observe(system.facts()) is None
    assert watch.state is not None and watch.state.trust is TimeTrust.BEFORE_BUILD
    system.elapse(30)
    assert watch.observe(system.facts()) is None
    assert not watch.state.trusted
    before = system.wall.now()
    system.elapse(2)
    system.wall.set(system.wall.now() + DAY)  # the NTP client steps the clock a day forward
    system.synchronised = True
    jump = watch.observe(system.facts())
    assert jump is not None and abs(jump.seconds - DAY) < 1e-6 and jump.last_good == before + 2
    assert watch.state.trust is TimeTrust.SYNCHRONISED and watch.state.trusted_since == system.wall.now()
    assert watch.state.jumps == 1 and watch.state.last_jump_seconds == jump.seconds


def test_a_backward_step_beyond_the_tolerance_is_a_jump_and_a_small_one_is_not() -> None:
    system = SteppedSystem(BUILD + DAY)
    watch = TimeWatch(accept_unsynchronised=False)
    watch.observe(system.facts())
    system.elapse(10)
    system.wall.set(system.wall.now() - JUMP_TOLERANCE_SECONDS / 2)  # a slew-sized correction: not a jump
    assert watch.observe(system.facts()) is None
    system.elapse(10)
    system.wall.set(system.wall.now() - 3600)
    jump = watch.observe(system.facts())
    assert jump is not None and round(jump.seconds) == -3600
    assert watch.state is not None and watch.state.trusted and watch.state.jumps == 1
    system.wall.set(system.wall.now() - 2 * DAY)  # back before the build: trust is lost
    assert watch.observe(system.facts()) is not None
    assert watch.state.trust is TimeTrust.BEFORE_BUILD and watch.state.trusted_since is None


def test_a_simulated_clock_is_trusted_and_never_jumps() -> None:
    clock = ManualClock(1_700_000_000.0)  # before any build: simulated time is the test-bed's truth
    watch = TimeWatch(accept_unsynchronised=False)
    source = SimulatedTimeSource(clock)
    watch.observe(source.facts())
    clock.set(clock.now() + 10 * DAY)
    assert watch.observe(source.facts()) is None
    assert watch.state is not None and watch.state.trust is TimeTrust.SIMULATED


def test_kernel_flag_and_build_time_read_from_this_machine() -> None:
    assert STA_UNSYNC == 0x40
    assert isinstance(kernel_synchronised(), bool)
    newest = max(p.stat().st_mtime for p in (Path(__file__).parents[1] / "agent").rglob("*.py"))
    assert build_time() == newest


def test_time_state_round_trips_through_the_status_file_and_shows(tmp_path: Path) -> None:
    system = SteppedSystem(BUILD - DAY, synchronised=False)
    watch = TimeWatch(accept_unsynchronised=False)
    watch.observe(system.facts())
    status = AgentStatus(
        pid=1, started_at=0.0, updated_at=0.0, scheme="dp3t", advertising=False, seconds_since_rotation=None,
        rotation_failures=0, sightings_per_minute=0.0, distinct_ids_15min=0, db_size_bytes=0,
        last_sync_at=None, last_sync_ok=None, exposure="none", time=watch.state,
    )  # fmt: skip
    write_status(tmp_path, status)
    back = read_status(tmp_path)
    assert back is not None and back.time == watch.state
    assert "time       BEFORE the build time" in render_status(back, 0.0, pid_alive=True)

"""Named jobs on the monotonic clock, driven by a fake one (tests.harness.FakeMonotonic)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import time_machine

from pia_mqtt.core.timers import Timers
from tests.harness import FakeMonotonic

T0 = datetime(2026, 1, 14, 19, 30, tzinfo=UTC)


class Recorder:
    """A guard that records which job names it ran, then runs the job."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ran: list[str] = []

    def guard(self, name: str, job: Callable[[], None]) -> None:
        """Record the name, run the job."""
        self.names.append(name)
        job()

    def job(self, label: str) -> Callable[[], None]:
        """A job that records ``label`` when it runs."""
        return lambda: self.ran.append(label)


@pytest.fixture
def clock() -> FakeMonotonic:
    """The job clock; tests move it with shift()."""
    return FakeMonotonic()


@pytest.fixture
def recorder() -> Recorder:
    """Records guard calls and job runs."""
    return Recorder()


@pytest.fixture
def timers(recorder: Recorder, clock: FakeMonotonic) -> Timers:
    """Timers on the fake job clock whose guard is the recorder."""
    return Timers(recorder.guard, clock=clock)


def test_nothing_scheduled_means_no_idle_time(clock: FakeMonotonic, timers: Timers) -> None:
    """idle_seconds() is None when no job is pending, so the loop waits on its queue only."""
    timers.run_pending()
    assert (None, False) == (timers.idle_seconds(), timers.scheduled("keepalive"))


def test_a_repeating_job_runs_once_per_interval(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder
) -> None:
    """every(): first run after one interval, then every interval, through the guard."""
    timers.every("keepalive", 900, recorder.job("bind"))
    timeline = []
    for step in (0, 899, 1, 899, 1, 900):
        clock.shift(step)
        timers.run_pending()
        timeline.append((len(recorder.ran), timers.idle_seconds()))
    expected = [(0, 900.0), (0, 1.0), (1, 900.0), (1, 1.0), (2, 900.0), (3, 900.0)]
    assert (expected, ["keepalive"] * 3, True) == (
        timeline,
        recorder.names,
        timers.scheduled("keepalive"),
    )


def test_a_one_shot_runs_once(clock: FakeMonotonic, timers: Timers, recorder: Recorder) -> None:
    """after(): runs once when due, then is no longer scheduled."""
    timers.after("retry", 5, recorder.job("retry"))
    before = (timers.scheduled("retry"), timers.idle_seconds())
    clock.shift(5)
    timers.run_pending()
    clock.shift(3600)
    timers.run_pending()
    assert ((True, 5.0), ["retry"], ["retry"], False, None) == (
        before,
        recorder.ran,
        recorder.names,
        timers.scheduled("retry"),
        timers.idle_seconds(),
    )


def test_a_one_shot_may_schedule_itself_again(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder
) -> None:
    """A retry that reschedules its own name from inside the job stays scheduled."""

    def retry() -> None:
        recorder.ran.append("retry")
        timers.after("retry", 10, retry)

    timers.after("retry", 1, retry)
    clock.shift(1)
    timers.run_pending()
    clock.shift(10)
    timers.run_pending()
    assert (["retry", "retry"], True, 10.0) == (
        recorder.ran,
        timers.scheduled("retry"),
        timers.idle_seconds(),
    )


@pytest.mark.parametrize("kind", ["every", "after"])
def test_scheduling_a_name_again_replaces_the_job(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder, kind: str
) -> None:
    """Only the newest job of a name exists: its interval and its function."""
    schedule = getattr(timers, kind)
    schedule("job", 10, recorder.job("old"))
    schedule("job", 20, recorder.job("new"))
    idle = timers.idle_seconds()
    clock.shift(20)
    timers.run_pending()
    assert (20.0, ["new"]) == (idle, recorder.ran)


def test_a_one_shot_replaces_a_repeating_job_of_the_same_name(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder
) -> None:
    """Names are shared between every() and after(): the last call wins."""
    timers.every("job", 10, recorder.job("every"))
    timers.after("job", 10, recorder.job("after"))
    for _ in range(3):
        clock.shift(10)
        timers.run_pending()
    assert (["after"], False) == (recorder.ran, timers.scheduled("job"))


@pytest.mark.parametrize("kind", ["every", "after"])
def test_cancel_forgets_the_job(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder, kind: str
) -> None:
    """A cancelled job never runs; cancelling an unknown name is harmless."""
    getattr(timers, kind)("job", 10, recorder.job("job"))
    timers.cancel("job")
    timers.cancel("never-scheduled")
    clock.shift(100)
    timers.run_pending()
    assert ([], False, None) == (recorder.ran, timers.scheduled("job"), timers.idle_seconds())


def test_idle_seconds_is_the_time_to_the_soonest_job(clock: FakeMonotonic, timers: Timers) -> None:
    """With several jobs, the loop sleeps until the first one is due."""
    timers.every("keepalive", 900, lambda: None)
    timers.after("retry", 30, lambda: None)
    timers.every("check", 60, lambda: None)
    first = timers.idle_seconds()
    clock.shift(12.5)
    assert (30.0, 17.5) == (first, timers.idle_seconds())


def test_an_overdue_job_gives_zero_idle_time(clock: FakeMonotonic, timers: Timers) -> None:
    """After a long stall (suspend), idle_seconds() is 0, never negative."""
    timers.every("keepalive", 60, lambda: None)
    clock.shift(3600)
    assert 0.0 == timers.idle_seconds()


def test_an_overdue_repeating_job_runs_once_not_once_per_missed_interval(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder
) -> None:
    """After a stall the keep-alive runs once and the next run is a full interval later."""
    timers.every("keepalive", 60, recorder.job("bind"))
    clock.shift(3600)
    timers.run_pending()
    assert (["bind"], 60.0) == (recorder.ran, timers.idle_seconds())


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["every", "after"])
def test_a_zero_interval_does_not_hang(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder, kind: str
) -> None:
    """A zero (or negative) interval is clamped: scheduling and running return at once."""
    getattr(timers, kind)("now", 0, recorder.job("now"))
    getattr(timers, kind)("negative", -5, recorder.job("negative"))
    idle = timers.idle_seconds()
    clock.shift(0.001)
    timers.run_pending()
    assert (0.001, ["now", "negative"]) == (idle, recorder.ran)


@pytest.fixture
def wall() -> Iterator[time_machine.Traveller]:
    """The wall clock frozen at T0 (time-machine); the job clock must not care."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.mark.parametrize(
    "step", [-3600, 3600, -86400 * 30], ids=["back-1h", "forward-1h", "back-30d"]
)
def test_wall_clock_steps_do_not_move_a_job(
    wall: time_machine.Traveller,
    timers: Timers,
    recorder: Recorder,
    clock: FakeMonotonic,
    step: int,
) -> None:
    """A wall-clock step (NTP, a VM resumed, an RTC-less Pi) neither holds nor fires a job.

    With ``schedule`` (naive local wall time) a step back of one hour held the keep-alive
    for an hour and a step forward fired it at once.
    """
    timers.every("keepalive", 900, recorder.job("bind"))
    clock.shift(450)
    wall.shift(step)
    timers.run_pending()
    early = (list(recorder.ran), timers.idle_seconds())
    clock.shift(450)
    timers.run_pending()
    assert (([], 450.0), ["bind"], 900.0) == (early, recorder.ran, timers.idle_seconds())


def test_a_time_zone_change_does_not_move_a_job(
    timers: Timers, recorder: Recorder, clock: FakeMonotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local time jumping by an hour (TZ Europe/Berlin → UTC, as at the end of summer time)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        timers.every("keepalive", 900, recorder.job("bind"))
        clock.shift(899)
        os.environ["TZ"] = "America/New_York"
        time.tzset()
        timers.run_pending()
        before = list(recorder.ran)
        clock.shift(1)
        timers.run_pending()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert ([], ["bind"]) == (before, recorder.ran)


def test_the_real_default_clock_is_time_monotonic(recorder: Recorder) -> None:
    """Without an injected clock, jobs are planned on time.monotonic (not the wall clock)."""
    timers = Timers(recorder.guard)
    before = time.monotonic()
    timers.after("retry", 30, recorder.job("retry"))
    idle = timers.idle_seconds()
    after = time.monotonic()
    assert idle is not None
    assert 30 - (after - before) - 0.01 <= idle <= 30.0
    assert timers.clock is time.monotonic


def test_many_reschedules_keep_the_heap_small(timers: Timers, clock: FakeMonotonic) -> None:
    """A retry rescheduled 10,000 times leaves one pending job, not 10,000 heap entries."""
    for _ in range(10_000):
        timers.after("retry", 5, lambda: None)
    assert (True, 5.0) == (timers.scheduled("retry"), timers.idle_seconds())
    assert len(timers._heap) < 100


def test_the_guard_receives_each_job_name(
    clock: FakeMonotonic, timers: Timers, recorder: Recorder
) -> None:
    """Every job runs through the guard with its own name (for logging a failure)."""
    timers.every("keepalive", 10, recorder.job("bind"))
    timers.after("retry", 10, recorder.job("retry"))
    clock.shift(10)
    timers.run_pending()
    assert (["keepalive", "retry"], ["bind", "retry"]) == (
        sorted(recorder.names),
        sorted(recorder.ran),
    )


def test_a_failing_job_is_the_guards_business(clock: FakeMonotonic) -> None:
    """A guard that swallows the exception keeps the loop and the job's schedule going."""
    failures: list[str] = []

    def guard(name: str, job: Callable[[], None]) -> None:
        try:
            job()
        except RuntimeError as exc:
            failures.append(f"{name}: {exc}")

    def boom() -> None:
        raise RuntimeError("gateway down")

    timers = Timers(guard, clock=clock)
    timers.every("keepalive", 10, boom)
    for _ in range(2):
        clock.shift(10)
        timers.run_pending()
    assert (["keepalive: gateway down"] * 2, True) == (failures, timers.scheduled("keepalive"))


def test_clear_cancels_everything(clock: FakeMonotonic, timers: Timers, recorder: Recorder) -> None:
    """clear() leaves no job pending (shutdown)."""
    timers.every("a", 1, recorder.job("a"))
    timers.after("b", 1, recorder.job("b"))
    timers.clear()
    clock.shift(10)
    timers.run_pending()
    assert ([], None, False, False) == (
        recorder.ran,
        timers.idle_seconds(),
        timers.scheduled("a"),
        timers.scheduled("b"),
    )

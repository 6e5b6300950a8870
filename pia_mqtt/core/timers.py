"""Named jobs on the monotonic clock: repeating, one-shot, cancellable, guarded.

Why not ``schedule`` (the library this replaced): it plans every job in naive local wall
time (``datetime.datetime.now()`` in ``next_run``, ``should_run`` and ``idle_seconds``), so
a clock stepped back one hour, or the end of summer time with a local ``TZ``, held the
keep-alive for an hour while PIA dropped the port after 15 minutes. Correcting it would
mean detecting jumps against the monotonic clock and rewriting every job's ``next_run``
before each call; we only ever used ``every(N).seconds``, so a small heap of due times on
an injected monotonic clock is simpler and cannot be moved by the wall clock or the TZ.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Monotonic = Callable[[], float]
Guard = Callable[[str, Callable[[], None]], None]

# A repeating job with a zero interval would run back to back forever; one-shots share
# the floor so that "now" means the next pass of the loop.
_MIN_INTERVAL = 0.001


@dataclass(eq=False)
class _Job:
    name: str
    due: float
    interval: float | None  # None: a one-shot
    job: Callable[[], None]
    seq: int = field(default=0)


class Timers:
    """One named job per name: scheduling a name again replaces the old job."""

    def __init__(self, guard: Guard, *, clock: Monotonic = time.monotonic) -> None:
        self._guard = guard
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        # (due, seq, job); entries of replaced or cancelled jobs stay until popped.
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()

    @property
    def clock(self) -> Monotonic:
        """The monotonic clock jobs are planned on (injected: tests move a fake one)."""
        return self._clock

    def every(self, name: str, seconds: float, job: Callable[[], None]) -> None:
        """Run ``job`` every ``seconds``, first after one interval."""
        interval = max(float(seconds), _MIN_INTERVAL)
        self._add(_Job(name, self._clock() + interval, interval, job))

    def after(self, name: str, seconds: float, job: Callable[[], None]) -> None:
        """Run ``job`` once, ``seconds`` from now (at least 1 ms: "now" is the next pass)."""
        self._add(_Job(name, self._clock() + max(float(seconds), _MIN_INTERVAL), None, job))

    def cancel(self, name: str) -> None:
        """Forget the job of that name, if any."""
        self._jobs.pop(name, None)

    def scheduled(self, name: str) -> bool:
        """Whether a job of that name is pending."""
        return name in self._jobs

    def due_in(self, name: str) -> float | None:
        """Seconds until the job of that name is due (0 when overdue), None if none."""
        job = self._jobs.get(name)
        return None if job is None else max(0.0, job.due - self._clock())

    def idle_seconds(self) -> float | None:
        """Seconds until the next job is due (0 when overdue), None when nothing is due."""
        self._drop_stale()
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self._clock())

    def run_pending(self) -> None:
        """Run every job that was due when called (a job scheduled meanwhile waits)."""
        now = self._clock()
        due: list[_Job] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, job = heapq.heappop(self._heap)
            if self._jobs.get(job.name) is job:
                due.append(job)
        for job in due:
            if self._jobs.get(job.name) is not job:
                continue  # cancelled or replaced by an earlier job of this pass
            if job.interval is None:
                del self._jobs[job.name]
                self._guard(job.name, job.job)
                continue
            self._guard(job.name, job.job)
            if self._jobs.get(job.name) is job:
                # Planned from when the run ended: after a stall it runs once, not once per
                # missed interval, and a slow job never runs back to back.
                job.due = self._clock() + job.interval
                self._push(job)

    def clear(self) -> None:
        """Cancel every job."""
        self._jobs.clear()
        self._heap.clear()

    def _add(self, job: _Job) -> None:
        self._jobs[job.name] = job
        self._push(job)

    def _push(self, job: _Job) -> None:
        job.seq = next(self._seq)
        heapq.heappush(self._heap, (job.due, job.seq, job))
        if len(self._heap) > 4 * len(self._jobs) + 16:
            # Many replaced jobs (a retry rescheduled often): rebuild so the heap stays small.
            self._heap = [(j.due, j.seq, j) for j in self._jobs.values()]
            heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        while self._heap and self._jobs.get(self._heap[0][2].name) is not self._heap[0][2]:
            heapq.heappop(self._heap)

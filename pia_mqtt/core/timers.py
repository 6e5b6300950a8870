"""Named jobs on a ``schedule.Scheduler``: repeating, one-shot, cancellable, guarded.

``schedule`` reads the wall clock itself (``datetime.now()``), so tests move time with
time-machine. It also runs forever on a zero interval, and does not catch job exceptions:
this adapter clamps intervals and runs every job through one guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import schedule

log = logging.getLogger(__name__)

# schedule loops forever computing the next run of a zero-second job.
_MIN_INTERVAL = 0.001


class Timers:
    """One named job per name: scheduling a name again replaces the old job."""

    def __init__(self, guard: Callable[[str, Callable[[], None]], None]) -> None:
        self._scheduler = schedule.Scheduler()
        self._jobs: dict[str, schedule.Job] = {}
        self._guard = guard

    def every(self, name: str, seconds: float, job: Callable[[], None]) -> None:
        """Run ``job`` every ``seconds``, first after one interval."""
        self.cancel(name)
        self._jobs[name] = self._scheduler.every(_interval(seconds)).seconds.do(
            self._guard, name, job
        )

    def after(self, name: str, seconds: float, job: Callable[[], None]) -> None:
        """Run ``job`` once, ``seconds`` from now."""
        self.cancel(name)

        def once() -> Any:
            self._jobs.pop(name, None)
            self._guard(name, job)
            return schedule.CancelJob

        self._jobs[name] = self._scheduler.every(_interval(seconds)).seconds.do(once)

    def cancel(self, name: str) -> None:
        """Forget the job of that name, if any."""
        job = self._jobs.pop(name, None)
        if job is not None:
            self._scheduler.cancel_job(job)

    def scheduled(self, name: str) -> bool:
        """Whether a job of that name is pending."""
        return name in self._jobs

    def idle_seconds(self) -> float | None:
        """Seconds until the next job is due (0 when overdue), None when nothing is due."""
        idle = self._scheduler.idle_seconds
        return None if idle is None else max(0.0, idle)

    def run_pending(self) -> None:
        """Run every job that is due."""
        self._scheduler.run_pending()

    def clear(self) -> None:
        """Cancel every job."""
        self._scheduler.clear()
        self._jobs.clear()


def _interval(seconds: float) -> Any:
    # schedule accepts fractional seconds (timedelta does the arithmetic) though typed int.
    return max(float(seconds), _MIN_INTERVAL)

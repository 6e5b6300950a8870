"""Coalescing and rate-limiting user commands: a pure gate, and the engine's use of it.

A button flood must not reach PIA: the first press is served at once, and any press that
arrives while one is queued, running or inside the command's limit collapses into at most
one deferred press, served when the limit ends. A press never bypasses a retry backoff
(refused credentials wait a whole minute): ``refresh`` is then left to the planned retry,
which does the same thing, and ``new_port`` waits until the backoff ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from pia_mqtt.core.model import Command
from pia_mqtt.core.timers import Timers

log = logging.getLogger(__name__)

# At most one press served per this many seconds. new_port costs a token request with the
# credentials and a port change; refresh one bindPort.
LIMITS: Mapping[Command, float] = {Command.REFRESH: 5.0, Command.NEW_PORT: 60.0}


class Action(Enum):
    """What to do with a press."""

    RUN = "run"  # serve it now
    DEFER = "defer"  # serve it at ``Verdict.at``: schedule it (first press over the limit)
    RETRY = "retry"  # left to the retry planned at ``Verdict.at`` (first such press)
    MERGED = "merged"  # already deferred or left to the retry: nothing to do, nothing to log


@dataclass(frozen=True)
class Verdict:
    """The gate's answer to a press (or to a deferred press falling due)."""

    action: Action
    at: float | None = None  # monotonic time of the deferred run (DEFER)
    merged: int = 0  # presses collapsed into this run since the last one served (RUN)


@dataclass
class _State:
    served_at: float | None = None
    deferred: bool = False
    merged: int = 0
    left_to: float | None = None  # the backoff end a refresh was last left to


class CommandGate:
    """Per-command rate limit and coalescing; the engine owns the timers it asks for."""

    def __init__(self, limits: Mapping[Command, float] = LIMITS) -> None:
        self._limits = dict(limits)
        self._state: dict[Command, _State] = {}

    def press(self, command: Command, now: float, *, hold_until: float | None) -> Verdict:
        """A press arrived; ``hold_until`` is the end of the controller's backoff, if any."""
        state = self._state.setdefault(command, _State())
        if state.deferred:
            state.merged += 1
            return Verdict(Action.MERGED)
        held = hold_until is not None and hold_until > now
        if held and command is Command.REFRESH:
            # The retry planned for the end of the backoff binds (or re-acquires) anyway.
            if state.left_to == hold_until:
                return Verdict(Action.MERGED)
            state.left_to = hold_until
            return Verdict(Action.RETRY, at=hold_until)
        due = self._due(command, state, now, hold_until)
        if due <= now:
            return self._serve(state, now)
        state.deferred = True
        return Verdict(Action.DEFER, at=due)

    def fire(self, command: Command, now: float, *, hold_until: float | None) -> Verdict:
        """The deferred press fell due: serve it, or defer it again if a backoff began."""
        state = self._state.setdefault(command, _State())
        due = self._due(command, state, now, hold_until)
        if due > now:
            state.deferred = True
            return Verdict(Action.DEFER, at=due)
        return self._serve(state, now)

    def forget(self, command: Command) -> None:
        """Drop a deferred press (its timer was cancelled, e.g. at shutdown)."""
        state = self._state.get(command)
        if state is not None:
            state.deferred = False

    def _due(self, command: Command, state: _State, now: float, hold_until: float | None) -> float:
        due = now
        if state.served_at is not None:
            due = max(due, state.served_at + self._limits.get(command, 0.0))
        if hold_until is not None:
            due = max(due, hold_until)
        return due

    @staticmethod
    def _serve(state: _State, now: float) -> Verdict:
        merged = state.merged
        state.served_at, state.deferred, state.merged = now, False, 0
        return Verdict(Action.RUN, merged=merged)


class CommandDispatcher:
    """Presses in (engine thread), served through ``run``; deferred ones on ``timers``."""

    def __init__(self, timers: Timers, run: Callable[[Command], None]) -> None:
        self._timers = timers
        self._run = run
        self._gate = CommandGate()

    def press(
        self, command: Command, source: str, *, hold_until: Callable[[], float | None]
    ) -> None:
        """A user pressed ``command``; ``hold_until`` tells the controller's backoff end."""
        verdict = self._gate.press(command, self._timers.clock(), hold_until=hold_until())
        self._act(command, source, verdict, hold_until=hold_until)

    def _fire(self, command: Command, source: str, hold_until: Callable[[], float | None]) -> None:
        verdict = self._gate.fire(command, self._timers.clock(), hold_until=hold_until())
        self._act(command, source, verdict, hold_until=hold_until, deferred=True)

    def _act(
        self,
        command: Command,
        source: str,
        verdict: Verdict,
        *,
        hold_until: Callable[[], float | None],
        deferred: bool = False,
    ) -> None:
        name = command.value
        if verdict.action is Action.RUN:
            # The one line that reports a flood: how many presses this run stands for.
            merged = f"; {verdict.merged} more presses merged into it" if verdict.merged else ""
            log.info(
                "Command %s from %s%s%s", name, source, " (deferred)" if deferred else "", merged
            )
            self._run(command)
            return
        if verdict.action is Action.MERGED:
            return
        delay = max(0.0, (verdict.at or 0.0) - self._timers.clock())
        if verdict.action is Action.RETRY:
            log.info(
                "Command %s from %s left to the retry in %.0f s (commands never bypass a backoff)",
                name,
                source,
                delay,
            )
            return
        if not deferred:
            log.info(
                "Command %s from %s deferred %.1f s (at most one per %.0f s, and never during a "
                "retry backoff); presses until then are merged into it",
                name,
                source,
                delay,
                LIMITS.get(command, 0.0),
            )
        self._timers.after(
            f"command:{name}", delay, lambda: self._fire(command, source, hold_until)
        )

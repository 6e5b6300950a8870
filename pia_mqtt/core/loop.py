"""The engine's loop: the inbox any thread posts to, and the one thread that drains it.

Mixed into :class:`~pia_mqtt.core.engine.Engine`, which owns the state these methods use:
messages wait in a ``SimpleQueue`` until the engine thread takes them, and between
messages the loop sleeps until the next timer (nothing wakes it otherwise).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pia_mqtt.core.commands import CommandDispatcher
from pia_mqtt.core.model import Command, Event, SinkHealth
from pia_mqtt.core.timers import Timers

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Controller


class ShutdownRequestedError(BaseException):
    """Raised from the signal handler to abort a blocking call so shutdown meets 2 s.

    A BaseException so that no ``except Exception`` in a client swallows it.
    """


class EngineLoop:
    """The inbox and the loop of :class:`~pia_mqtt.core.engine.Engine` (its state lives there)."""

    timers: Timers
    _commands: CommandDispatcher
    _queue: queue.SimpleQueue[tuple[str, Any]]
    _controller: Controller | None
    _stopping: threading.Event
    _busy: bool
    _fatal: BaseException | None

    if TYPE_CHECKING:

        def _guard(self, name: str, job: Callable[[], None]) -> None: ...
        def _record_health(self, sink: str, health: SinkHealth) -> None: ...
        def _dispatch_event(self, event: Event) -> None: ...

    # -- Inbox (any thread) -----------------------------------------------------------------
    def command(self, command: Command, *, source: str) -> None:
        """Queue a user command."""
        self._queue.put(("command", (command, source)))

    def report(self, sink: str, health: SinkHealth) -> None:
        """Queue a sink's health report."""
        self._queue.put(("report", (sink, health)))

    def emit(self, event: Event) -> None:
        """Queue an event to be dispatched to every sink."""
        self._queue.put(("event", event))

    def call_soon(self, name: str, job: Callable[[], None]) -> None:
        """Queue ``job`` to run on the engine thread (route events from the netlink thread)."""
        self._queue.put(("call", (name, job)))

    def request_stop(self) -> None:
        """Ask the loop to stop (signal handlers); raises to abort a blocking call."""
        self._stopping.set()
        self._queue.put(("command", (Command.STOP, "signal")))
        if self._busy and threading.current_thread() is threading.main_thread():
            raise ShutdownRequestedError

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A stretch of the main thread that a stop request aborts (jobs, start, drains)."""
        busy, self._busy = self._busy, True
        try:
            if self._stopping.is_set() and not busy:
                raise ShutdownRequestedError
            yield
        finally:
            self._busy = busy

    # -- the loop --------------------------------------------------------------------------
    def run(self, *, until: Callable[[], bool] | None = None, timeout: float | None = None) -> None:
        """Run until STOP (or ``until()`` is true, or ``timeout`` real seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopping.is_set():
            if until is not None and until():
                return
            wait = self.timers.idle_seconds()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            self._wait_and_process(wait)
            self.run_pending()

    def run_pending(self) -> None:
        """Process every queued message and every due timer, without waiting."""
        while True:
            try:
                kind, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            self._process(kind, payload)
        if not self._stopping.is_set():
            with self.interruptible():
                self.timers.run_pending()
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal

    @property
    def stopping(self) -> bool:
        """Whether STOP was received."""
        return self._stopping.is_set()

    # -- internals -------------------------------------------------------------------------
    def _wait_and_process(self, wait: float | None) -> None:
        try:
            kind, payload = self._queue.get(timeout=wait)
        except queue.Empty:
            return
        self._process(kind, payload)

    def _process(self, kind: str, payload: Any) -> None:
        if kind == "command":
            command, source = payload
            if command is Command.STOP:
                self._stopping.set()
            elif not self._stopping.is_set():
                self._on_command(command, source)
        elif kind == "call":
            name, job = payload
            with self.interruptible():
                self._guard(name, job)
        elif kind == "report":
            self._record_health(*payload)
        elif kind == "event":
            self._dispatch_event(payload)

    def _on_command(self, command: Command, source: str) -> None:
        controller = self._controller
        if controller is not None:
            self._commands.press(command, source, hold_until=controller.backoff_until)

    def _handle(self, command: Command) -> None:
        controller = self._controller
        if controller is not None:
            with self.interruptible():
                self._guard(f"command {command.value}", lambda: controller.handle(command))

"""The engine: one thread owns the state, wakes on its inbox or the next timer.

Two injected clocks: ``clock`` (aware UTC wall time) for what people read and for lease
expiry, ``monotonic`` for every job, so a wall-clock step or a DST change never moves a
keep-alive. User commands pass through a :class:`~pia_mqtt.core.commands.CommandGate`
(coalesced, rate-limited, never bypassing the controller's retry backoff).

Sinks and paho's network thread never touch the state: they post to the inbox
(:class:`~pia_mqtt.core.model.Inbox`). A *controller* (the PIA lease manager, or the gluetun
follower) decides what the port is and changes the snapshot through :meth:`Engine.update`;
every change is handed to every sink, and a sink that fails never stops the others.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pia_mqtt.core.closing import close_all
from pia_mqtt.core.commands import CommandDispatcher
from pia_mqtt.core.loop import EngineLoop, ShutdownRequestedError
from pia_mqtt.core.model import (
    Command,
    Event,
    EventKind,
    Sink,
    SinkHealth,
    Snapshot,
    Status,
    valid_port,
)
from pia_mqtt.core.timers import Monotonic, Timers
from pia_mqtt.errors import PiaMqttError
from pia_mqtt.redact import describe

# ShutdownRequestedError lives in loop.py; cli.py imports it from here, with the engine.
__all__ = ["CLOSE_TIMEOUT", "Clock", "Controller", "Engine", "ShutdownRequestedError", "utc_now"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Everything closes within this after the loop stopped (DESIGN: SIGTERM ends the process
# within 2 s in every state; the rest is the interpreter's own exit).
CLOSE_TIMEOUT = 1.2


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime."""
    return datetime.now(UTC)


class Controller(Protocol):
    """Decides the port: started once, told about commands, closed on shutdown."""

    def start(self) -> None:
        """Schedule the first jobs."""

    def handle(self, command: Command) -> None:
        """React to a user command (refresh, new port)."""

    def backoff_until(self) -> float | None:
        """Monotonic time a retry backoff ends (commands wait for it), None when none."""

    def close(self) -> None:
        """Release clients; called once on shutdown."""


class Engine(EngineLoop):
    """The scheduler loop, the snapshot, and dispatch to sinks. Implements ``Inbox``."""

    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
        source: str = "pia",
        last_port: int | None = None,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.timers = Timers(self._guard, clock=monotonic)
        self._commands = CommandDispatcher(self.timers, self._handle)
        self.snapshot = Snapshot(
            status=Status.STARTING,
            updated_at=clock(),
            source=source,
            previous_port=last_port if valid_port(last_port) else None,
        )
        # SimpleQueue.put is reentrant: the SIGTERM handler puts STOP while the main thread
        # may be inside get() holding a Queue's lock (a Queue deadlocked there).
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._sinks: list[Sink] = []
        self._controller: Controller | None = None
        self._stopping = threading.Event()
        self._busy = False
        self._fatal: BaseException | None = None

    # -- wiring ---------------------------------------------------------------------------
    def attach(self, controller: Controller, sinks: Sequence[Sink]) -> None:
        """Set the controller and the sinks (before :meth:`start`)."""
        self._controller = controller
        self._sinks = list(sinks)

    @property
    def sinks(self) -> list[Sink]:
        """The attached sinks, in dispatch order."""
        return list(self._sinks)

    def start(self) -> None:
        """Publish the starting snapshot, schedule sink checks, start the controller."""
        with self.interruptible():
            self._dispatch_snapshot()
            for sink in self._sinks:
                interval = sink.check_interval
                if interval:
                    self.timers.every(f"check:{sink.name}", interval, self._checker(sink))
            if self._controller is not None:
                self._controller.start()

    # -- state (engine thread) -------------------------------------------------------------
    @property
    def last_port(self) -> int | None:
        """The port published last: the current one, else the one before (across restarts).

        ``port_changed`` fires only when a new port differs from this (DESIGN: hook and
        events rule), so a restart that keeps the port is not a change.
        """
        port = self.snapshot.port
        return port if valid_port(port) else self.snapshot.previous_port

    def update(self, **changes: Any) -> None:
        """Change the snapshot; sinks hear about it only when something really changed."""
        new_port = changes.get("port", self.snapshot.port)
        if valid_port(new_port) and new_port != self.last_port:
            changes.setdefault("previous_port", self.last_port)
        candidate = dataclasses.replace(self.snapshot, **changes)
        if dataclasses.replace(candidate, updated_at=self.snapshot.updated_at) == self.snapshot:
            return
        self.snapshot = dataclasses.replace(candidate, updated_at=self.clock())
        self._dispatch_snapshot()

    def announce(
        self, kind: EventKind, message: str, *, level: int = logging.INFO, **data: Any
    ) -> None:
        """Log an event (INFO unless told) and hand it to every sink."""
        log.log(level, "%s", message)
        event = Event(
            kind=kind, at=self.clock(), message=message, port=self.snapshot.port, data=data
        )
        self._dispatch_event(event)

    def reapply(self, reason: str) -> None:
        """The tunnel changed but the port did not: every sink applies the same port again.

        Torrent clients lose their listening socket when their interface goes down and up
        (qBittorrent #21288), so a VPN reconnect must re-apply even an unchanged port; the
        hook runs with ``PIA_PORT_REASON=reapplied`` and ``port_reapplied`` is announced.
        """
        port = self.snapshot.port
        if not valid_port(port):
            return
        self.snapshot = dataclasses.replace(
            self.snapshot, tunnel_epoch=self.snapshot.tunnel_epoch + 1, updated_at=self.clock()
        )
        self._dispatch_snapshot()
        self.announce(
            EventKind.PORT_REAPPLIED,
            f"Port {port} applied again after {reason}",
            old_port=port,
            reason=reason,
        )

    def close(self, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop timers, close the controller, then every sink (MQTT says offline last).

        One deadline for all of them (:func:`~pia_mqtt.core.closing.close_all`): they close
        side by side, the last sink (MQTT) after them, and nothing waits past ``timeout``.
        """
        self._stopping.set()
        self.timers.clear()
        closers: list[tuple[str, Callable[[], None]]] = []
        if self._controller is not None:
            closers.append(("controller", self._controller.close))
        closers += [(sink.name, sink.close) for sink in self._sinks]
        close_all(closers, timeout=timeout)

    # -- dispatch (engine thread; the loop is in loop.py) ------------------------------------
    def _record_health(self, sink: str, health: SinkHealth) -> None:
        sinks = {**self.snapshot.sinks, sink: health}
        old = self.snapshot.sinks.get(sink)
        if old is not None and dataclasses.replace(health, last_sync=old.last_sync) == old:
            # Only "last confirmed" moved (a qBittorrent check every minute): keep it for the
            # next real change instead of rewriting files and MQTT state each time (SD cards).
            self.snapshot = dataclasses.replace(self.snapshot, sinks=sinks)
            return
        self.update(sinks=sinks)

    def _dispatch_snapshot(self) -> None:
        snapshot = self.snapshot
        for sink in self._sinks:
            self._guard(f"{sink.name}.publish", functools.partial(sink.publish, snapshot))

    def _dispatch_event(self, event: Event) -> None:
        for sink in self._sinks:
            self._guard(f"{sink.name}.event", functools.partial(sink.event, event))

    def _checker(self, sink: Sink) -> Callable[[], None]:
        def check() -> None:
            sink.check(self.snapshot)

        return check

    def _guard(self, name: str, job: Callable[[], None]) -> None:
        """Run one job: outside-system errors are logged and the loop goes on.

        Anything else is a bug: it is logged with its traceback and ends the loop (the
        process exits non-zero and the container restarts, keeping the saved port).
        """
        try:
            job()
        except PiaMqttError as exc:
            log.error("%s failed: %s", name, describe(exc))
        except Exception as exc:
            log.exception("Bug in %s", name)
            self._fatal = exc
            self._stopping.set()

"""What the status endpoint knows: the latest snapshot, the last few events, counters.

The engine thread writes (:meth:`Board.publish`, :meth:`Board.record`, :meth:`Board.beat`);
the HTTP thread reads a frozen :class:`View` copy. Writes only swap references and bump
integers under a lock held for microseconds, so the engine never waits on a slow client.

Counters come only from what the engine dispatches: a bind is a snapshot whose
``last_refresh`` moved, the rest are events. They start at zero with the process, as
Prometheus expects of counters.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, Snapshot

EVENTS_KEPT = 10
# PiaRefusedError.reason values; anything else is counted as "other" so that a new reason
# cannot grow the metric's label set without bound.
REFUSAL_REASONS = frozenset({"busy", "bad_signature", "unauthorized", "expired", "refused"})
# An ERROR event is one failed attempt to hold the port that PIA did not refuse outright
# (network, timeout, no gateway, token endpoint); it is retried with backoff.
OTHER_FAILURE = "error"


@dataclass(frozen=True)
class Counts:
    """Counters since the process started."""

    binds: int = 0
    bind_failures: Mapping[str, int] = field(default_factory=dict)
    port_changes: int = 0
    renewals: int = 0
    gateway_changes: int = 0
    events: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """A consistent copy of the board for one HTTP request."""

    snapshot: Snapshot
    status_since: datetime
    events: tuple[Event, ...]
    counts: Counts
    engine_seen: float
    """Monotonic time of the engine thread's last call (snapshot, event or heartbeat)."""


def failure_reason(event: Event) -> str | None:
    """The ``reason`` label of a bind failure, or None when the event is not one."""
    if event.kind is EventKind.BIND_FAILED:
        reason = str(event.data.get("reason", ""))
        return reason if reason in REFUSAL_REASONS else "other"
    if event.kind is EventKind.ERROR:
        return OTHER_FAILURE
    return None


def _safe(event: Event) -> Event:
    # Messages are redacted where they are made; redacting again costs nothing and keeps a
    # secret off the page even if a sink forgot.
    return replace(event, message=redact.redact(event.message))


class Board:
    """Thread-safe store written by the engine thread, read by the HTTP thread."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        keep: int = EVENTS_KEPT,
    ) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshot = snapshot
        self._since = snapshot.updated_at
        self._events: deque[Event] = deque(maxlen=keep)
        self._binds = 0
        self._failures: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._seen = monotonic()

    def publish(self, snapshot: Snapshot) -> None:
        """A new snapshot (engine thread)."""
        with self._lock:
            old = self._snapshot
            if snapshot.status is not old.status:
                self._since = snapshot.updated_at
            if snapshot.last_refresh is not None and snapshot.last_refresh != old.last_refresh:
                self._binds += 1
            self._snapshot = snapshot
            self._seen = self._monotonic()

    def record(self, event: Event) -> None:
        """An event (engine thread)."""
        safe = _safe(event)
        with self._lock:
            self._events.appendleft(safe)
            self._kinds[event.kind.value] += 1
            reason = failure_reason(event)
            if reason is not None:
                self._failures[reason] += 1
            self._seen = self._monotonic()

    def beat(self) -> None:
        """The engine thread is alive (its periodic check reached this sink)."""
        with self._lock:
            self._seen = self._monotonic()

    def view(self) -> View:
        """A frozen copy for the HTTP thread."""
        with self._lock:
            kinds = dict(self._kinds)
            return View(
                snapshot=self._snapshot,
                status_since=self._since,
                events=tuple(self._events),
                counts=Counts(
                    binds=self._binds,
                    bind_failures=dict(self._failures),
                    port_changes=kinds.get(EventKind.PORT_CHANGED.value, 0),
                    renewals=kinds.get(EventKind.RENEWED.value, 0),
                    gateway_changes=sum(n for k, n in kinds.items() if k.startswith("gateway_")),
                    events=kinds,
                ),
                engine_seen=self._seen,
            )

"""When to look for the gateway again: route events, or a /proc digest where they are refused.

The lease manager asks one question, "did the routing state change since I last looked?",
and this class answers it without waking the daemon for nothing:

- With route events (:class:`~pia_mqtt.pia.interfaces.RouteEvents`, rtnetlink) the engine
  thread is woken only after a burst of kernel messages, once per burst however many
  arrive, and only then is the digest compared. Nothing is scheduled.
- Where netlink is refused, the digest is read every ``GATEWAY_WATCH_INTERVAL`` seconds.
- Either way the keep-alive asks :meth:`NetworkWatch.changed` too: a free safety net
  for a change the events missed.
- A changed digest is not yet a changed tunnel: :meth:`NetworkWatch.untouched` tells a
  container's new network (same candidates, gateway reached the same way) from a VPN
  reconnect or move.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.core.engine import Engine
    from pia_mqtt.gateway.routes import Candidate
    from pia_mqtt.pia.interfaces import Finder, RouteEvents

log = logging.getLogger(__name__)


class NetworkWatch:
    """Calls ``on_change`` on the engine thread when the routing digest changed."""

    def __init__(
        self,
        engine: Engine,
        finder: Finder,
        *,
        interval: float,
        events: RouteEvents | None = None,
    ) -> None:
        self._engine = engine
        self._finder = finder
        self._interval = interval
        self._events = events
        self._events_on = False
        self._queued = threading.Event()
        self._digest: str | None = None
        self._on_change: Callable[[], None] | None = None
        # The local candidates the last detection saw, and how the gateway was reached at
        # the last bind (source address, interface index).
        self._candidates: list[Candidate] | None = None
        self._path: str | None = None

    @property
    def event_driven(self) -> bool:
        """Whether route events wake the watch (no periodic check)."""
        return self._events_on

    def start(self, on_change: Callable[[], None]) -> None:
        """Remember the current digest and start watching."""
        self._on_change = on_change
        self.mark()
        self._events_on = self._events is not None and self._events.start(self._event)
        if not self._events_on:
            log.info("Checking routes every %g s (GATEWAY_WATCH_INTERVAL)", self._interval)
            self._engine.timers.every("watch", self._interval, self.check)

    def mark(self) -> None:
        """The routing state detection is about to look at: changes are measured from here."""
        self._digest = self._finder.fingerprint()
        self._candidates = self._finder.candidates()

    def bound(self, gateway: str) -> None:
        """A port was bound on ``gateway``: remember the way to it."""
        self._path = self._finder.path(gateway)

    def untouched(self, gateway: str) -> bool:
        """After a change: the same local candidates, and ``gateway`` reached the same way.

        Same source address over the same interface (not one made again): the change was
        elsewhere, nothing to probe. Otherwise the new candidates are remembered.
        """
        candidates = self._finder.candidates()
        path = self._finder.path(gateway)
        if candidates == self._candidates and path is not None and path == self._path:
            return True
        self._candidates = candidates
        return False

    def changed(self) -> bool:
        """Whether the digest differs from the last one seen (and remember the new one)."""
        digest = self._finder.fingerprint()
        if digest == self._digest:
            return False
        self._digest = digest
        return True

    def confirm(self) -> None:
        """After a detection: when routes moved while it ran, check again right away.

        What detection read may already be gone; the digest is forgotten so that the next
        check runs even if the routes flap back to what :meth:`mark` saw.
        """
        if self._finder.fingerprint() != self._digest:
            self._digest = None
            self._engine.call_soon("watch", self.check)

    def check(self) -> None:
        """Compare the digest now; call ``on_change`` when it moved (engine thread)."""
        if self.changed() and self._on_change is not None:
            log.info("Routes or addresses changed: detecting the gateway again")
            self._on_change()

    def close(self) -> None:
        """Stop the route events."""
        if self._events is not None and self._events_on:
            self._events.close()
        self._events_on = False

    def _event(self) -> None:
        """From the events' thread: queue one check, not one per burst."""
        if not self._queued.is_set():
            self._queued.set()
            self._engine.call_soon("watch", self._event_check)

    def _event_check(self) -> None:
        # Cleared first: a change during this check queues the next one.
        self._queued.clear()
        self.check()

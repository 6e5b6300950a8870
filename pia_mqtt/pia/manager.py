"""The PIA lease manager: get a port, keep it bound, keep the same one for as long as PIA lets us.

Decisions, in one place:

- Start: a saved lease with more than 7 days left is bound at once (same port after a
  restart). Otherwise token -> getSignature -> bindPort.
- Keep-alive: bindPort every ``PORT_FORWARD_REFRESH_INTERVAL`` of real time (the engine's
  monotonic clock); the signature is replaced once fewer than 7 days remain.
- A *fresh* signature that already looks inside the 7-day margin (or expired) says this
  host's clock is wrong (PIA issues about two months): it is used, one warning names the
  clock, and it is replaced only when PIA refuses it, never on every keep-alive.
- Commands reach here already coalesced and rate-limited by the engine; they wait for
  :meth:`LeaseManager.backoff_until` (refused credentials: a whole minute).
- A refused bind (busy, bad signature, unauthorized, expired) -> a fresh signature, once.
- Network faults -> retry with exponential backoff capped at 60 s; after two failures in a
  row the gateway is detected again.
- Gateway watch (:mod:`pia_mqtt.pia.netwatch`): when routes or addresses changed, detect
  again (the gateway saved with the lease is tried first only at start) and bind again; if
  the gateway moved, the saved signature first (PIA signatures are valid on every server),
  a new one only if refused. The same port after such a change is re-applied to the sinks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pia_mqtt.core.model import Command, EventKind, Status
from pia_mqtt.errors import GatewayNotFoundError, PiaMqttError, PiaRefusedError
from pia_mqtt.pia.binding import Binder
from pia_mqtt.pia.failures import Backoff
from pia_mqtt.pia.moves import GatewayMoves
from pia_mqtt.pia.netwatch import NetworkWatch
from pia_mqtt.pia.state import LeaseState

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine
    from pia_mqtt.core.model import GatewayTarget
    from pia_mqtt.pia.interfaces import Finder, PiaApi, RouteEvents
    from pia_mqtt.pia.lease import LeaseStore

log = logging.getLogger(__name__)


class LeaseManager:
    """The controller for ``PORT_SOURCE=pia``.

    Its jobs (acquire, keep-alive, the watch's callback) and their timers are here; each step
    is one collaborator's verb: renewal and binding (:class:`~.binding.Binder`), following
    the gateway (:class:`~.moves.GatewayMoves`) and failure handling and backoff
    (:class:`~.failures.Backoff`). They share only :class:`~.state.LeaseState`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        pia: PiaApi,
        finder: Finder,
        store: LeaseStore,
        refresh_interval: float,
        watch_interval: float = 2.0,
        events: RouteEvents | None = None,
        retries: bool = True,
    ) -> None:
        self._engine = engine
        self._pia = pia
        self._finder = finder  # tests reach the finder through here (its read_system)
        self._interval = refresh_interval
        self._state = LeaseState()
        self._watch = NetworkWatch(engine, finder, interval=watch_interval, events=events)
        self._backoff = Backoff(engine, self._state, retries=retries)
        self._binder = Binder(
            engine,
            self._state,
            pia=pia,
            store=store,
            watch=self._watch,
            backoff=self._backoff,
            interval=refresh_interval,
        )
        self._moves = GatewayMoves(engine, self._state, finder=finder, watch=self._watch)

    # -- Controller ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load the saved lease and schedule the first acquisition and the gateway watch."""
        self._moves.prefer(self._binder.load())
        self._engine.update(status=Status.ACQUIRING)
        self._engine.timers.after("acquire", 0, self.acquire)
        self._watch.start(self.network_changed)

    def handle(self, command: Command) -> None:
        """Refresh binds now; new_port drops the signature and asks for a new port."""
        if command is Command.REFRESH:
            self._engine.announce(
                EventKind.COMMAND, "Refresh requested: binding now", command=command.value
            )
            self.acquire()
        elif command is Command.NEW_PORT:
            self._engine.announce(
                EventKind.COMMAND,
                "New port requested: dropping the signature",
                command=command.value,
            )
            self._drop_lease()
            self.acquire()

    def backoff_until(self) -> float | None:
        """Monotonic time the current retry backoff ends; None when not backing off."""
        return self._backoff.until()

    def close(self) -> None:
        """Stop the route events and close PIA connections."""
        self._watch.close()
        self._pia.close()

    # -- jobs ---------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Make sure a port is bound: detect, reuse or renew the lease, bind."""
        self._engine.timers.cancel("acquire")
        try:
            gateway = self._state.gateway or self._moves.detect()
            fresh = False
            lease = self._state.lease
            if lease is None or self._binder.renewal_due(lease):
                renewing = lease is not None
                self._binder.new_lease(gateway)
                fresh = True
                if renewing:
                    self._engine.announce(
                        EventKind.RENEWED, "Signature renewed before it expired (new port)"
                    )
            try:
                self._bind(gateway)
            except PiaRefusedError as exc:
                if fresh:
                    raise
                self._engine.announce(
                    EventKind.BIND_FAILED,
                    f"Saved signature refused on {gateway.address} ({exc.reason}): getting a "
                    "new port",
                    reason=exc.reason,
                )
                self._drop_lease()
                self._binder.new_lease(gateway)
                self._bind(gateway)
        except PiaMqttError as exc:
            self._failed(exc)

    def keepalive(self) -> None:
        """The 15-minute bindPort; renews the signature when its time has come."""
        if self._watch.event_driven and self._watch.changed():
            # The safety net without a wake-up of its own: a change the events missed.
            log.info("Routes or addresses changed (seen by the keep-alive): detecting again")
            self.network_changed()
            return
        gateway, lease = self._state.gateway, self._state.lease
        if lease is None or gateway is None or self._binder.renewal_due(lease):
            self.acquire()
            return
        try:
            self._bind(gateway)
        except PiaRefusedError as exc:
            self._engine.announce(
                EventKind.BIND_FAILED,
                f"Keep-alive refused ({exc.reason}): getting a new port",
                reason=exc.reason,
            )
            self._drop_lease()
            self.acquire()
        except PiaMqttError as exc:
            self._failed(exc)

    def network_changed(self) -> None:
        """Routes or addresses changed: detect again (no preference for the saved gateway)."""
        try:
            bind_now = self._moves.follow()
        except GatewayNotFoundError as exc:
            self._failed(exc)
            return
        if bind_now:
            self.acquire()

    # -- steps shared by the jobs -------------------------------------------------------------
    def _bind(self, gateway: GatewayTarget) -> None:
        recovered = self._binder.bind(gateway)
        # Bound: no retry pending. A keep-alive period starts after a recovery or when none
        # runs; an ordinary keep-alive or a refresh keeps the running one.
        self._engine.timers.cancel("acquire")
        if recovered or not self._engine.timers.scheduled("keepalive"):
            self._engine.timers.every("keepalive", self._interval, self.keepalive)

    def _drop_lease(self) -> None:
        # Also what tests call to leave STATE_FILE without a lease, as new_port does first.
        self._binder.drop_lease()

    def _failed(self, exc: PiaMqttError) -> None:
        if isinstance(exc, PiaRefusedError):
            # A refused signature is not tried again: the retry asks for a new port.
            self._drop_lease()
        self._backoff.failed(exc, retry=self.acquire)

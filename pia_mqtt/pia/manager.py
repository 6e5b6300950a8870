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
from datetime import datetime

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import Command, EventKind, GatewayTarget, Status
from pia_mqtt.errors import PiaMqttError, PiaRefusedError
from pia_mqtt.pia.binding import BindingSteps
from pia_mqtt.pia.failures import FailureHandling
from pia_mqtt.pia.interfaces import Finder, PiaApi, RouteEvents
from pia_mqtt.pia.lease import Lease, LeaseStore
from pia_mqtt.pia.moves import GatewayMoves
from pia_mqtt.pia.netwatch import NetworkWatch

log = logging.getLogger(__name__)


class LeaseManager(BindingSteps, GatewayMoves, FailureHandling):
    """The controller for ``PORT_SOURCE=pia``.

    Its jobs are here; their steps are mixed in: renewal and binding (:mod:`.binding`),
    the reaction to the gateway watch (:mod:`.moves`) and failure handling (:mod:`.failures`).
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
        self._finder = finder
        self._store = store
        self._interval = refresh_interval
        self._retries = retries  # False for `once`: a failure ends the run, say so
        self._gateway: GatewayTarget | None = None
        self._lease: Lease | None = None
        self._failures = 0
        self._lost_announced = False
        # Set when a route/address change re-ran detection: the next successful bind
        # re-applies the port to the sinks even when it did not change (DESIGN).
        self._tunnel_changed = False
        # The lease last written to STATE_FILE: a failed or lost save is retried after binds.
        self._saved: Lease | None = None
        self._save_error: str | None = None
        # The gateway kept with the lease: tried first until a detection succeeds or the
        # network changes; and the one STATE_FILE holds now.
        self._saved_gateway: GatewayTarget | None = None
        self._stored_gateway: tuple[str, str] | None = None
        self._watch = NetworkWatch(engine, finder, interval=watch_interval, events=events)
        # A fresh signature that looked unusable: the clock is wrong, do not renew it.
        self._clock_suspect: Lease | None = None
        self._clock_warned = False
        # Monotonic end of the current retry backoff (None while binds succeed), and of the
        # last successful bind (PIA drops a port 15 minutes of real time after it).
        self._retry_at: float | None = None
        self._bound_at: float | None = None

    @property
    def _now(self) -> datetime:
        return self._engine.clock()

    # -- Controller ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load the saved lease and schedule the first acquisition and the gateway watch."""
        self._lease = self._saved = self._store.load()
        if self._lease is not None:
            if self._lease.usable(self._now):
                log.info(
                    "Saved lease for port %d found (expires %s): binding it again",
                    self._lease.port,
                    self._lease.expires_at.isoformat(),
                )
            else:
                log.info(
                    "Saved lease for port %d expires %s: a new port will be requested",
                    self._lease.port,
                    self._lease.expires_at.isoformat(),
                )
        self._saved_gateway = self._store.load_gateway()
        if self._saved_gateway is not None:
            self._stored_gateway = (self._saved_gateway.address, self._saved_gateway.hostname)
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
        if self._retry_at is None or self._retry_at <= self._engine.monotonic():
            return None
        return self._retry_at

    def close(self) -> None:
        """Stop the route events and close PIA connections."""
        self._watch.close()
        self._pia.close()

    # -- jobs ---------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Make sure a port is bound: detect, reuse or renew the lease, bind."""
        self._engine.timers.cancel("acquire")
        try:
            gateway = self._gateway or self._detect()
            fresh = False
            if self._lease is None or self._renewal_due(self._lease):
                renewing = self._lease is not None
                self._new_lease(gateway)
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
                self._new_lease(gateway)
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
        if self._lease is None or self._gateway is None or self._renewal_due(self._lease):
            self.acquire()
            return
        try:
            self._bind(self._gateway)
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

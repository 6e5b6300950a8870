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
from datetime import datetime, timedelta

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import Command, EventKind, GatewayTarget, Status
from pia_mqtt.errors import GatewayNotFoundError, OutputError, PiaMqttError, PiaRefusedError
from pia_mqtt.pia.interfaces import Finder, PiaApi, RouteEvents
from pia_mqtt.pia.lease import Lease, LeaseStore, clock_warning
from pia_mqtt.pia.netwatch import NetworkWatch
from pia_mqtt.pia.retry import PORT_LIFETIME, forget_gateway, retry_delay
from pia_mqtt.redact import describe

log = logging.getLogger(__name__)


class LeaseManager:
    """The controller for ``PORT_SOURCE=pia``."""

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

    def network_changed(self) -> None:
        """Routes or addresses changed: detect again (no preference for the saved gateway)."""
        self._saved_gateway = None
        self._tunnel_changed = True
        if self._gateway is None:
            # Waiting out a backoff (or never found one): the network changed, so try now.
            self.acquire()
            return
        if self._watch.untouched(self._gateway.address):
            # Another network changed (a container started on a host-network setup).
            log.debug("Routes changed, not the way to gateway %s", self._gateway.address)
            self._tunnel_changed = False
            return
        try:
            gateway = self._finder.find()
        except GatewayNotFoundError as exc:
            self._failed(exc)
            return
        finally:
            self._watch.confirm()
        if (gateway.address, gateway.hostname) == (self._gateway.address, self._gateway.hostname):
            # Same server, but the tunnel went down and up (a VPN reconnect): bind now and
            # re-apply the port to the sinks (acquire, not keepalive: no second digest check).
            self._gateway = gateway
            self.acquire()
            return
        self._moved(gateway)

    # -- steps --------------------------------------------------------------------------------
    def _detect(self) -> GatewayTarget:
        self._watch.mark()
        try:
            gateway = self._finder.find(saved=self._saved_gateway)
        finally:
            self._watch.confirm()
        self._saved_gateway = None
        self._gateway = gateway
        previous = self._engine.snapshot.gateway
        if previous is not None and previous != gateway.address:
            self._engine.announce(
                EventKind.GATEWAY_CHANGED,
                f"Gateway changed from {previous} to {gateway.address} ({gateway.hostname})",
                old_gateway=previous,
                gateway=gateway.address,
            )
        return gateway

    def _moved(self, gateway: GatewayTarget, *, rebind: bool = True) -> None:
        old = self._gateway
        self._gateway = gateway
        self._engine.announce(
            EventKind.GATEWAY_CHANGED,
            f"Gateway changed from {old.address if old else 'none'} to {gateway.address} "
            f"({gateway.hostname}): binding the saved signature there",
            old_gateway=old.address if old else None,
            gateway=gateway.address,
        )
        self._engine.update(
            gateway=gateway.address, hostname=gateway.hostname, status=Status.ACQUIRING
        )
        if rebind:
            self.acquire()

    def _renewal_due(self, lease: Lease) -> bool:
        """Whether to replace the lease now: inside the margin, unless the clock is suspect."""
        return lease is not self._clock_suspect and not lease.usable(self._now)

    def _new_lease(self, gateway: GatewayTarget) -> None:
        token = self._pia.get_token()
        lease = self._pia.get_signature(gateway, token)
        self._lease = lease
        log.info(
            "New signature from %s: port %d, valid until %s",
            gateway.address,
            lease.port,
            lease.expires_at.isoformat(),
        )
        now = self._now
        if not lease.usable(now):
            self._clock_suspect = lease
            if not self._clock_warned:
                self._clock_warned = True
                log.warning("%s", clock_warning(lease, now))
        self._save(lease)

    def _save(self, lease: Lease) -> None:
        try:
            self._store.save(lease, gateway=self._gateway)
        except OutputError as exc:
            # The port still works; only the next restart would get a new one. Retried after
            # every bind until it works (disk full, folder removed), logged once.
            message = describe(exc)
            if message != self._save_error:
                log.error("%s (STATE_FILE); the port will change on the next restart", message)
            self._save_error = message
            return
        if self._save_error is not None:
            log.info("Saved lease written again to %s", self._store.path)
        self._saved, self._save_error = lease, None
        if self._gateway is not None:
            self._stored_gateway = (self._gateway.address, self._gateway.hostname)

    def _drop_lease(self) -> None:
        self._lease = self._saved = None
        try:
            self._store.clear()
        except OutputError as exc:
            log.error("%s (STATE_FILE)", describe(exc))

    def _bind(self, gateway: GatewayTarget) -> None:
        lease = self._lease
        assert lease is not None  # noqa: S101 - callers ensure a lease
        self._pia.bind(gateway, lease)
        stored = (gateway.address, gateway.hostname)
        if (
            lease is not self._saved
            or stored != self._stored_gateway
            or not self._store.path.exists()
        ):
            self._save(lease)
        now = self._now
        previous = self._engine.snapshot
        last_port = self._engine.last_port
        recovered = previous.status is not Status.ACTIVE
        self._failures = 0
        self._retry_at = None
        self._bound_at = self._engine.monotonic()
        self._lost_announced = False
        self._watch.bound(gateway.address)
        self._engine.update(
            status=Status.ACTIVE,
            port=lease.port,
            gateway=gateway.address,
            hostname=gateway.hostname,
            expires_at=lease.expires_at,
            last_refresh=now,
            next_refresh=now + timedelta(seconds=self._interval),
            last_error=None,
        )
        tunnel_changed, self._tunnel_changed = self._tunnel_changed, False
        if last_port != lease.port:
            self._engine.announce(
                EventKind.PORT_CHANGED,
                f"Port {lease.port} bound on {gateway.address}"
                + (f" (was {last_port})" if last_port else ""),
                old_port=last_port,
            )
        elif tunnel_changed:
            self._engine.reapply("the VPN tunnel changed")
        elif recovered:
            self._engine.announce(EventKind.BOUND, f"Port {lease.port} bound on {gateway.address}")
        else:
            log.debug("Keep-alive for port %d on %s ok", lease.port, gateway.address)
        self._engine.timers.cancel("acquire")
        if recovered or not self._engine.timers.scheduled("keepalive"):
            self._engine.timers.every("keepalive", self._interval, self.keepalive)

    def _failed(self, exc: PiaMqttError) -> None:
        self._failures += 1
        message = describe(exc)
        delay = retry_delay(exc, self._failures)
        # A gateway found before the failure stays shown (`once` printed gateway=None).
        found = self._gateway
        where = {"gateway": found.address, "hostname": found.hostname} if found else {}
        if forget_gateway(exc, self._failures):
            self._gateway = None
        if isinstance(exc, PiaRefusedError):
            self._drop_lease()
        self._engine.update(
            status=Status.ERROR,
            last_error=message,
            next_refresh=self._now + timedelta(seconds=delay) if self._retries else None,
            **where,
        )
        if self._retries:
            self._engine.announce(
                EventKind.ERROR,
                f"{message}; retrying in {delay:.0f} s",
                level=logging.ERROR,
                retry_in=delay,
            )
        else:
            self._engine.announce(EventKind.ERROR, f"{message}; not retrying (once)",
                                  level=logging.ERROR)  # fmt: skip
        bound = self._bound_at
        lifetime = PORT_LIFETIME.total_seconds()
        if (
            bound is not None
            and self._engine.monotonic() - bound > lifetime
            and not self._lost_announced
        ):
            self._lost_announced = True
            self._engine.announce(
                EventKind.LOST,
                "No successful bind for 15 minutes: PIA has probably dropped the port",
            )
        self._engine.timers.cancel("keepalive")
        self._engine.timers.after("acquire", delay, self.acquire)
        self._retry_at = self._engine.monotonic() + delay

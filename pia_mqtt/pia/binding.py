"""The lease manager's renewal and binding steps: a new signature, STATE_FILE, bindPort.

Mixed into :class:`~pia_mqtt.pia.manager.LeaseManager`, which owns the state declared here;
the decisions these steps implement are listed in that module's docstring.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import EventKind, GatewayTarget, Status
from pia_mqtt.errors import OutputError
from pia_mqtt.pia.interfaces import PiaApi
from pia_mqtt.pia.lease import Lease, LeaseStore, clock_warning
from pia_mqtt.pia.netwatch import NetworkWatch
from pia_mqtt.redact import describe

# The manager's logger: these lines were its own before the split, and still read so.
log = logging.getLogger("pia_mqtt.pia.manager")


class BindingSteps:
    """Get, save, drop and bind the lease (the state is :class:`LeaseManager`'s)."""

    _engine: Engine
    _pia: PiaApi
    _store: LeaseStore
    _watch: NetworkWatch
    _interval: float
    _gateway: GatewayTarget | None
    _lease: Lease | None
    _saved: Lease | None
    _save_error: str | None
    _stored_gateway: tuple[str, str] | None
    _clock_suspect: Lease | None
    _clock_warned: bool
    _tunnel_changed: bool
    _failures: int
    _retry_at: float | None
    _bound_at: float | None
    _lost_announced: bool

    if TYPE_CHECKING:

        @property
        def _now(self) -> datetime: ...
        def keepalive(self) -> None:
            """The job in :class:`~pia_mqtt.pia.manager.LeaseManager`."""

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

"""The lease manager's renewal and binding: a new signature, STATE_FILE, bindPort.

:class:`Binder` is one of :class:`~pia_mqtt.pia.manager.LeaseManager`'s collaborators: it
keeps what STATE_FILE holds and whether the clock looked wrong; the lease and the gateway are
in the shared :class:`~pia_mqtt.pia.state.LeaseState`. The decisions these steps implement
are listed in the manager's module docstring.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pia_mqtt.core.model import EventKind, GatewayTarget, Status
from pia_mqtt.errors import OutputError
from pia_mqtt.pia.lease import clock_warning
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine
    from pia_mqtt.pia.failures import Backoff
    from pia_mqtt.pia.interfaces import PiaApi
    from pia_mqtt.pia.lease import Lease, LeaseStore
    from pia_mqtt.pia.netwatch import NetworkWatch
    from pia_mqtt.pia.state import LeaseState

# The manager's logger: these lines were its own before the split, and still read so.
log = logging.getLogger("pia_mqtt.pia.manager")


class Binder:
    """Load, get, save, drop and bind the lease."""

    def __init__(
        self,
        engine: Engine,
        state: LeaseState,
        *,
        pia: PiaApi,
        store: LeaseStore,
        watch: NetworkWatch,
        backoff: Backoff,
        interval: float,
    ) -> None:
        self._engine = engine
        self._state = state
        self._pia = pia
        self._store = store
        self._watch = watch
        self._backoff = backoff
        self._interval = interval
        # The lease last written to STATE_FILE: a failed or lost save is retried after binds.
        self._saved: Lease | None = None
        self._save_error: str | None = None
        # The gateway STATE_FILE holds now.
        self._stored_gateway: tuple[str, str] | None = None
        # A fresh signature that looked unusable: the clock is wrong, do not renew it.
        self._clock_suspect: Lease | None = None
        self._clock_warned = False

    def load(self) -> GatewayTarget | None:
        """Take the lease from STATE_FILE (saying whether it is kept); the gateway saved too."""
        lease = self._state.lease = self._saved = self._store.load()
        if lease is not None:
            if lease.usable(self._engine.clock()):
                log.info(
                    "Saved lease for port %d found (expires %s): binding it again",
                    lease.port,
                    lease.expires_at.isoformat(),
                )
            else:
                log.info(
                    "Saved lease for port %d expires %s: a new port will be requested",
                    lease.port,
                    lease.expires_at.isoformat(),
                )
        saved_gateway = self._store.load_gateway()
        if saved_gateway is not None:
            self._stored_gateway = (saved_gateway.address, saved_gateway.hostname)
        return saved_gateway

    def renewal_due(self, lease: Lease) -> bool:
        """Whether to replace the lease now: inside the margin, unless the clock is suspect."""
        return lease is not self._clock_suspect and not lease.usable(self._engine.clock())

    def new_lease(self, gateway: GatewayTarget) -> None:
        """A new token and signature (a new port) from ``gateway``, saved to STATE_FILE."""
        token = self._pia.get_token()
        lease = self._pia.get_signature(gateway, token)
        self._state.lease = lease
        log.info(
            "New signature from %s: port %d, valid until %s",
            gateway.address,
            lease.port,
            lease.expires_at.isoformat(),
        )
        now = self._engine.clock()
        if not lease.usable(now):
            self._clock_suspect = lease
            if not self._clock_warned:
                self._clock_warned = True
                log.warning("%s", clock_warning(lease, now))
        self._save(lease)

    def _save(self, lease: Lease) -> None:
        gateway = self._state.gateway
        try:
            self._store.save(lease, gateway=gateway)
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
        if gateway is not None:
            self._stored_gateway = (gateway.address, gateway.hostname)

    def drop_lease(self) -> None:
        """Forget the signature, here and in STATE_FILE: the next acquisition gets a new port."""
        self._state.lease = self._saved = None
        try:
            self._store.clear()
        except OutputError as exc:
            log.error("%s (STATE_FILE)", describe(exc))

    def bind(self, gateway: GatewayTarget) -> bool:
        """Bind the lease's port on ``gateway`` and publish it; True unless it was active already.

        Raises what :meth:`PiaApi.bind` raises; the caller plans the jobs that follow.
        """
        lease = self._state.lease
        assert lease is not None  # noqa: S101 - callers ensure a lease
        self._pia.bind(gateway, lease)
        stored = (gateway.address, gateway.hostname)
        if (
            lease is not self._saved
            or stored != self._stored_gateway
            or not self._store.path.exists()
        ):
            self._save(lease)
        now = self._engine.clock()
        previous = self._engine.snapshot
        last_port = self._engine.last_port
        recovered = previous.status is not Status.ACTIVE
        self._backoff.bound()
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
        tunnel_changed, self._state.tunnel_changed = self._state.tunnel_changed, False
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
        return recovered

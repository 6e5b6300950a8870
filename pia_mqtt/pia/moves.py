"""The lease manager's reaction to the gateway watch: detect again, follow a moved gateway.

:class:`GatewayMoves` is one of :class:`~pia_mqtt.pia.manager.LeaseManager`'s collaborators:
it keeps the gateway saved with the lease (tried first at start); the gateway in use is in the
shared :class:`~pia_mqtt.pia.state.LeaseState`. The watch itself (when routes or addresses
changed) is :mod:`pia_mqtt.pia.netwatch`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pia_mqtt.core.model import EventKind, GatewayTarget, Status

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine
    from pia_mqtt.pia.interfaces import Finder
    from pia_mqtt.pia.netwatch import NetworkWatch
    from pia_mqtt.pia.state import LeaseState

# The manager's logger: these lines were its own before the split, and still read so.
log = logging.getLogger("pia_mqtt.pia.manager")


class GatewayMoves:
    """Detect the gateway and follow it when the network changed."""

    def __init__(
        self, engine: Engine, state: LeaseState, *, finder: Finder, watch: NetworkWatch
    ) -> None:
        self._engine = engine
        self._state = state
        self._finder = finder
        self._watch = watch
        # The gateway kept with the lease: tried first until a detection succeeds or the
        # network changes.
        self._saved: GatewayTarget | None = None

    def prefer(self, saved: GatewayTarget | None) -> None:
        """Try ``saved`` (STATE_FILE's gateway) first at the next detection."""
        self._saved = saved

    def follow(self) -> bool:
        """Routes or addresses changed: detect again; True when the lease must be bound now.

        Raises :class:`~pia_mqtt.errors.GatewayNotFoundError` when detection finds nothing.
        """
        self._saved = None
        self._state.tunnel_changed = True
        current = self._state.gateway
        if current is None:
            # Waiting out a backoff (or never found one): the network changed, so try now.
            return True
        if self._watch.untouched(current.address):
            # Another network changed (a container started on a host-network setup).
            log.debug("Routes changed, not the way to gateway %s", current.address)
            self._state.tunnel_changed = False
            return False
        try:
            gateway = self._finder.find()
        finally:
            self._watch.confirm()
        if (gateway.address, gateway.hostname) == (current.address, current.hostname):
            # Same server, but the tunnel went down and up (a VPN reconnect): bind now and
            # re-apply the port to the sinks (acquire, not keepalive: no second digest check).
            self._state.gateway = gateway
            return True
        self._moved(gateway)
        return True

    def detect(self) -> GatewayTarget:
        """Detect the gateway (the saved one first, once) and announce a change of address."""
        self._watch.mark()
        try:
            gateway = self._finder.find(saved=self._saved)
        finally:
            self._watch.confirm()
        self._saved = None
        self._state.gateway = gateway
        previous = self._engine.snapshot.gateway
        if previous is not None and previous != gateway.address:
            self._engine.announce(
                EventKind.GATEWAY_CHANGED,
                f"Gateway changed from {previous} to {gateway.address} ({gateway.hostname})",
                old_gateway=previous,
                gateway=gateway.address,
            )
        return gateway

    def _moved(self, gateway: GatewayTarget) -> None:
        old = self._state.gateway
        self._state.gateway = gateway
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

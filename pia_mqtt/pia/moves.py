"""The lease manager's reaction to the gateway watch: detect again, follow a moved gateway.

Mixed into :class:`~pia_mqtt.pia.manager.LeaseManager`, which owns the state declared here;
the watch itself (when routes or addresses changed) is :mod:`pia_mqtt.pia.netwatch`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import EventKind, GatewayTarget, Status
from pia_mqtt.errors import GatewayNotFoundError, PiaMqttError
from pia_mqtt.pia.interfaces import Finder
from pia_mqtt.pia.netwatch import NetworkWatch

# The manager's logger: these lines were its own before the split, and still read so.
log = logging.getLogger("pia_mqtt.pia.manager")


class GatewayMoves:
    """Detect the gateway and follow it when the network changed (state: :class:`LeaseManager`)."""

    _engine: Engine
    _finder: Finder
    _watch: NetworkWatch
    _gateway: GatewayTarget | None
    _saved_gateway: GatewayTarget | None
    _tunnel_changed: bool

    if TYPE_CHECKING:

        def acquire(self) -> None:
            """The job in :class:`~pia_mqtt.pia.manager.LeaseManager`."""

        def _failed(self, exc: PiaMqttError) -> None: ...

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

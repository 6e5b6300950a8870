"""What the lease manager needs from PIA and from gateway detection, as protocols.

The lease manager (:mod:`pia_mqtt.pia.manager`) sees its outside systems only through these,
so tests can drive it with the simulator or a recording fake and wiring picks the real ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.core.model import GatewayTarget
    from pia_mqtt.gateway.routes import Candidate
    from pia_mqtt.pia.lease import Lease


class PiaApi(Protocol):
    """What the lease manager needs from PIA (pia_mqtt.pia.client.PiaClient)."""

    def get_token(self) -> str:
        """A fresh token (raises PiaAuthError, PiaUnavailableError, PiaReplyError)."""

    def get_signature(self, gateway: GatewayTarget, token: str) -> Lease:
        """A new payload+signature, i.e. a new port."""

    def bind(self, gateway: GatewayTarget, lease: Lease) -> None:
        """Bind (keep alive) the lease's port (raises PiaRefusedError when refused)."""

    def close(self) -> None:
        """Release connections."""


class Finder(Protocol):
    """What the lease manager needs from gateway detection (pia_mqtt.gateway.finder)."""

    def find(self, *, saved: GatewayTarget | None = None) -> GatewayTarget:
        """The gateway to use, ``saved`` tried first (raises GatewayNotFoundError)."""

    def fingerprint(self) -> str:
        """A cheap, local digest of routes and addresses; changes when the VPN moves."""

    def candidates(self) -> list[Candidate]:
        """The local candidates, best first (routes and addresses; sends nothing)."""

    def path(self, address: str) -> str | None:
        """How this host reaches ``address`` (source address, interface); sends nothing."""


class RouteEvents(Protocol):
    """Wakes the lease manager when routes, addresses or links change (gateway.netlink)."""

    def start(self, notify: Callable[[], None]) -> bool:
        """Call ``notify`` from another thread after each burst; False when unavailable."""

    def close(self) -> None:
        """Stop watching."""

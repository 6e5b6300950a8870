"""What the lease manager's collaborators share: the gateway in use, the lease, the tunnel flag.

:class:`~pia_mqtt.pia.manager.LeaseManager` creates one :class:`LeaseState` and hands it to
its binder (:mod:`.binding`), its gateway follower (:mod:`.moves`) and its backoff
(:mod:`.failures`); everything else each of them keeps to itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pia_mqtt.core.model import GatewayTarget
    from pia_mqtt.pia.lease import Lease


@dataclass
class LeaseState:
    """The lease manager's mutable state between jobs (engine thread only, so no lock)."""

    # The gateway binds go to; None until detected, and again when it must be detected anew.
    gateway: GatewayTarget | None = None
    # The signature in use; None when a new one (a new port) must be requested.
    lease: Lease | None = None
    # Set when a route/address change re-ran detection: the next successful bind
    # re-applies the port to the sinks even when it did not change (DESIGN).
    tunnel_changed: bool = False

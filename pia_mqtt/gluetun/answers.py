"""What gluetun's control server answers: one GET's ports, and the refusals with their fixes.

The fixes name the settings to change (gluetun's and ours); the HTTP calls that meet them
are :class:`pia_mqtt.gluetun.client.GluetunClient`'s, which keeps every name importable.
"""

from __future__ import annotations

from dataclasses import dataclass

from pia_mqtt.errors import GluetunError

AUTH_FILE = (
    "gluetun's control-server auth config (HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH, "
    "e.g. /gluetun/auth/config.toml)"
)
FOLLOW_FIX = "set VPN_PORT_FORWARDING=on in gluetun and PORT_SOURCE=gluetun here"
NO_PUT_ROUTE_FIX = (
    "this gluetun release has no PUT /v1/portforward (tagged releases up to v3.41.3 serve "
    f"GET only): {FOLLOW_FIX}"
)
PROVIDER_FORWARDS_FIX = (
    "gluetun refuses ports from outside while its provider forwards itself: "
    f"{FOLLOW_FIX}, or use VPN_SERVICE_PROVIDER=custom"
)


class GluetunAuthError(GluetunError):
    """gluetun refused GLUETUN_API_KEY (or its absence) for a route: 401/403."""


class GluetunUnavailableError(GluetunError):
    """gluetun's control server did not answer (refused, timeout, bad URL)."""


class GluetunNotReadyError(GluetunError):
    """gluetun answered 5xx for a reason that passes: its tunnel has not come up yet."""


class GluetunReplyError(GluetunError):
    """gluetun answered something we cannot use (unknown route, not a port)."""


class GluetunRefusedError(GluetunError):
    """gluetun refused PUT /v1/portforward for a reason that cannot change by itself.

    Only another gluetun image or configuration (so a gluetun restart) can change it.
    """


class GluetunNoPutRouteError(GluetunRefusedError):
    """400 ``method PUT not supported``: a tagged release, GET only."""


class GluetunProviderForwardsError(GluetunRefusedError):
    """500 ``failed setting forwarded ports`` from a gluetun whose provider forwards itself."""


@dataclass(frozen=True)
class ForwardedPorts:
    """One GET's answer: the ports, and what it tells about the gluetun behind it."""

    ports: tuple[int, ...]
    # False while gluetun has not created its port-forward service (``"ports": null``):
    # its process started and its tunnel has not come up yet.
    started: bool
    # Which keys gluetun answered with ("port+ports", "port", "ports"): differs by version.
    shape: str

    @property
    def port(self) -> int | None:
        """The first port (the one pia-mqtt uses), None when nothing is forwarded."""
        return self.ports[0] if self.ports else None

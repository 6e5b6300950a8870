"""gluetun's control server: the client for its port-forward routes and the port reader.

Pushing our port into gluetun's firewall is :mod:`pia_mqtt.gluetun.push`.

gluetun (``internal/server``, ``internal/portforward``; full notes in
``tests/fake_gluetun.py``): ``GET /v1/portforward`` -> ``{"port": N, "ports": [N]}``, port 0
and ports null/``[]`` while nothing is forwarded; releases without it answer 400/404 and
serve ``GET /v1/openvpn/portforwarded`` -> ``{"port": N}``, the one route public under the
default auth roles. ``PUT /v1/portforward {"ports": [N]}`` opens N in its firewall: 200, or
500 while its port forwarding service is not started. Auth failures are 401 (a proxy may
say 403); ``apikey`` roles read the ``X-API-Key`` header.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from pia_mqtt import redact
from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import GluetunError

log = logging.getLogger(__name__)

PORTFORWARD = "/v1/portforward"
LEGACY_PORTFORWARD = "/v1/openvpn/portforwarded"
_ROLE_HINT = (
    "a role in gluetun's control-server auth config (/gluetun/auth/config.toml, "
    'HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH) with auth = "apikey" whose routes include '
    '"GET /v1/portforward" and "PUT /v1/portforward"'
)


class GluetunAuthError(GluetunError):
    """gluetun refused GLUETUN_API_KEY (or its absence) for a route: 401/403."""


class GluetunUnavailableError(GluetunError):
    """gluetun's control server did not answer (refused, timeout, bad URL)."""


class GluetunNotReadyError(GluetunError):
    """gluetun answered 5xx: its port forwarding service is not running yet."""


class GluetunReplyError(GluetunError):
    """gluetun answered something we cannot use (unknown route, not a port)."""


class _RouteMissingError(GluetunReplyError):
    """400/404/405 to a route: an older gluetun that does not serve it."""


class _PortsReply(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    port: int | None = None
    ports: list[int] | None = None


def _shown_url(url: str) -> str:
    """Drop user:password@ from a URL (basic auth may be written into GLUETUN_CONTROL_URL)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _excerpt(response: requests.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return redact.redact(text) or "empty body"


class GluetunClient:
    """A small client for the two port-forward routes of gluetun's control server."""

    def __init__(self, base_url: str, *, api_key: str | None, timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self.url = _shown_url(self._base)
        self._has_key = bool(api_key)
        redact.register(api_key)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._legacy = False
        self._session = requests.Session()
        # The control server is local: HTTP(S)_PROXY meant for other traffic must not apply.
        self._session.trust_env = False
        if api_key:
            self._session.headers["X-API-Key"] = api_key

    def forwarded_ports(self) -> list[int]:
        """Every port gluetun holds now; ``[]`` while nothing is forwarded (port 0)."""
        if self._legacy:
            return self._get_ports(LEGACY_PORTFORWARD)
        try:
            return self._get_ports(PORTFORWARD)
        except (_RouteMissingError, GluetunAuthError) as exc:
            first: GluetunError = exc
        # Older gluetun lacks the route; default auth roles make only the legacy one public.
        try:
            ports = self._get_ports(LEGACY_PORTFORWARD)
        except GluetunError:
            raise first from None
        log.info(
            "gluetun at %s refused GET %s (%s); using the legacy route %s",
            self.url,
            PORTFORWARD,
            first,
            LEGACY_PORTFORWARD,
        )
        self._legacy = True
        return ports

    def forwarded_port(self) -> int | None:
        """Return the port gluetun forwards (the first of several), or None if none yet."""
        ports = self.forwarded_ports()
        return ports[0] if ports else None

    def set_forwarded_ports(self, ports: list[int]) -> None:
        """Tell gluetun to open ``ports`` (PUT /v1/portforward); never sends 0 or an empty list."""
        if not ports or not all(valid_port(port) for port in ports):
            raise ValueError(f"refusing to push invalid ports {ports!r} to gluetun")
        self._request("PUT", PORTFORWARD, {"ports": list(ports)})

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def _get_ports(self, path: str) -> list[int]:
        response = self._request("GET", path, None)
        try:
            reply = _PortsReply.model_validate_json(response.content)
        except ValidationError:
            raise GluetunReplyError(
                f"gluetun's control server at {self.url} answered GET {path} with something "
                f"that is not a port ({_excerpt(response)}): check GLUETUN_CONTROL_URL"
            ) from None
        ports = reply.ports or ([reply.port] if reply.port else [])
        if not all(valid_port(port) for port in ports):
            raise GluetunReplyError(
                f"gluetun's control server at {self.url} answered GET {path} with an invalid "
                f"port {ports!r}"
            )
        return ports

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> requests.Response:
        what = f"{method} {path}"
        try:
            with self._lock:
                response = self._session.request(
                    method, self._base + path, json=body, timeout=self._timeout
                )
        except requests.RequestException as exc:
            raise GluetunUnavailableError(
                f"cannot reach gluetun's control server at {self.url} for {what} "
                f"({redact.describe(exc)}): check GLUETUN_CONTROL_URL and that gluetun is "
                "running (its control server listens on port 8000)"
            ) from None
        code = response.status_code
        if code < 300:
            return response
        if code in (401, 403):
            key = "GLUETUN_API_KEY was not accepted" if self._has_key else "no GLUETUN_API_KEY set"
            raise GluetunAuthError(
                f"gluetun's control server at {self.url} refused {what} (HTTP {code}, {key}): "
                f"set GLUETUN_API_KEY to the API key of {_ROLE_HINT}"
            )
        if code >= 500:
            raise GluetunNotReadyError(
                f"gluetun's control server at {self.url} failed {what} (HTTP {code}: "
                f"{_excerpt(response)}); its port forwarding service is probably not started yet"
            )
        error = _RouteMissingError if code in (400, 404, 405) else GluetunReplyError
        raise error(
            f"gluetun's control server at {self.url} answered HTTP {code} to {what} "
            f"({_excerpt(response)}): check GLUETUN_CONTROL_URL points at gluetun's control "
            f"server and that gluetun is recent enough to serve {path}"
        )


class GluetunPortReader:
    """PORT_SOURCE=gluetun: the port gluetun forwards itself, polled by the engine."""

    def __init__(self, client: GluetunClient) -> None:
        self._client = client

    def read(self) -> int | None:
        """Return the forwarded port, or None while gluetun has none; raises GluetunError."""
        return self._client.forwarded_port()

    def close(self) -> None:
        """Close the client."""
        self._client.close()

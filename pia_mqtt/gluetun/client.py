"""gluetun's control server: the client for its port-forward routes and the port reader.

Pushing our port into gluetun's firewall is :mod:`pia_mqtt.gluetun.push`, following
gluetun's own port :mod:`pia_mqtt.gluetun.follow`. What each gluetun version answers
(read in its source; commits and tags in ``tests/fake_gluetun.py``; the errors and fixes
for the refusals are in :mod:`pia_mqtt.gluetun.answers`):

- ``GET /v1/portforward`` -> ``{"port": N, "ports": [N]}`` (v3.41.2+ and development
  builds), ``{"port": N}`` / ``{"ports": [...]}`` (v3.41.0/1); port 0 and ``[]`` while
  nothing is forwarded, ``"ports": null`` before the tunnel first came up. v3.40 and older
  only serve ``GET /v1/openvpn/portforwarded`` -> ``{"port": N}``, which v3.41+ redirect
  (301) to ``/v1/portforward``.
- ``PUT /v1/portforward {"ports": [N]}``: tagged releases answer 400 ``method PUT not
  supported``; development builds 500 ``failed setting forwarded ports`` while their
  provider forwards by itself (or before the tunnel first came up: then the GET shows
  ``null``), 200 with a provider that has no port forwarding (``custom``).
- Auth: 401 when no role lists the route or the key is wrong (a proxy may say 403);
  ``apikey`` roles read the ``X-API-Key`` header.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from pia_mqtt import limits, redact
from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.answers import (
    AUTH_FILE,
    FOLLOW_FIX,
    NO_PUT_ROUTE_FIX,
    PROVIDER_FORWARDS_FIX,
    ForwardedPorts,
    GluetunAuthError,
    GluetunNoPutRouteError,
    GluetunNotReadyError,
    GluetunProviderForwardsError,
    GluetunRefusedError,
    GluetunReplyError,
    GluetunUnavailableError,
)

__all__ = [
    "AUTH_FILE",
    "FOLLOW_FIX",
    "LEGACY_PORTFORWARD",
    "NO_PUT_ROUTE_FIX",
    "PORTFORWARD",
    "PROVIDER_FORWARDS_FIX",
    "ForwardedPorts",
    "GluetunAuthError",
    "GluetunClient",
    "GluetunNoPutRouteError",
    "GluetunNotReadyError",
    "GluetunPortReader",
    "GluetunProviderForwardsError",
    "GluetunRefusedError",
    "GluetunReplyError",
    "GluetunUnavailableError",
]

log = logging.getLogger(__name__)

PORTFORWARD = "/v1/portforward"
LEGACY_PORTFORWARD = "/v1/openvpn/portforwarded"


class _RouteMissingError(GluetunReplyError):
    """400/404/405 to a GET route: an older gluetun that does not serve it."""


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

    def __init__(self, base_url: str, *, api_key: str | None, timeout: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self.url = _shown_url(self._base)
        self._has_key = bool(api_key)
        redact.register(api_key)
        self._timeout = timeout  # one deadline per whole request (pia_mqtt.limits)
        self._lock = threading.Lock()
        self._legacy = False
        self.last_read: ForwardedPorts | None = None
        # The control server is local: HTTP(S)_PROXY meant for other traffic must not apply.
        self._session = limits.session(trust_env=False)
        if api_key:
            self._session.headers["X-API-Key"] = api_key

    def read(self, *, fallback: bool = True) -> ForwardedPorts:
        """What gluetun forwards now (GET); falls back to the legacy route on old gluetun.

        ``fallback=False`` makes exactly one request to ``/v1/portforward`` (check-config).
        """
        if self._legacy and fallback:
            return self._get(LEGACY_PORTFORWARD)
        try:
            return self._get(PORTFORWARD)
        except (_RouteMissingError, GluetunAuthError) as exc:
            if not fallback:
                raise
            first: GluetunError = exc
        # gluetun before v3.41 lacks the route; its default roles make the legacy one public.
        try:
            reply = self._get(LEGACY_PORTFORWARD)
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
        return reply

    def forwarded_ports(self) -> list[int]:
        """Every port gluetun holds now; ``[]`` while nothing is forwarded (port 0)."""
        return list(self.read().ports)

    def set_forwarded_ports(self, ports: list[int]) -> None:
        """Tell gluetun to open ``ports`` (PUT /v1/portforward); never sends 0 or an empty list.

        Raises GluetunNoPutRouteError / GluetunProviderForwardsError for the refusals that
        cannot change by themselves, GluetunNotReadyError while gluetun's tunnel is not up.
        """
        if not ports or not all(valid_port(port) for port in ports):
            raise ValueError(f"refusing to push invalid ports {ports!r} to gluetun")
        what = f"PUT {PORTFORWARD}"
        response = self._request("PUT", PORTFORWARD, {"ports": list(ports)}, check=False)
        code, body = response.status_code, _excerpt(response)
        if code < 300:
            return
        said = f"gluetun's control server at {self.url} refused {what} (HTTP {code}: {body})"
        if code == 400 and "not supported" in body:
            raise GluetunNoPutRouteError(f"{said}: {NO_PUT_ROUTE_FIX}")
        if code == 500 and "failed setting forwarded ports" in body:
            # The same 500 comes before gluetun's first tunnel up; only the GET tells.
            if not self._get(PORTFORWARD).started:
                raise GluetunNotReadyError(
                    f"{said}: gluetun's tunnel has not come up yet (it forwards nothing); "
                    "trying again at the next check"
                )
            raise GluetunProviderForwardsError(f"{said}: {PROVIDER_FORWARDS_FIX}")
        self._raise_for(response, what, PORTFORWARD)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def _get(self, path: str) -> ForwardedPorts:
        response = self._request("GET", path, None)
        try:
            reply = _PortsReply.model_validate_json(response.content)
        except ValidationError:
            raise GluetunReplyError(
                f"gluetun's control server at {self.url} answered GET {path} with something "
                f"that is not a port ({_excerpt(response)}): check GLUETUN_CONTROL_URL"
            ) from None
        fields = reply.model_fields_set
        shape = "+".join(name for name in ("port", "ports") if name in fields) or "none"
        ports = reply.ports if reply.ports is not None else ([reply.port] if reply.port else [])
        if not all(valid_port(port) for port in ports):
            raise GluetunReplyError(
                f"gluetun's control server at {self.url} answered GET {path} with an invalid "
                f"port {ports!r}"
            )
        started = not ("ports" in fields and reply.ports is None)
        self.last_read = ForwardedPorts(ports=tuple(ports), started=started, shape=shape)
        return self.last_read

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, check: bool = True
    ) -> requests.Response:
        what = f"{method} {path}"
        response = self._send(method, path, body)
        if response.status_code in (301, 302, 307, 308):
            # Redirects are not followed blindly: the API key must not travel elsewhere.
            target = urljoin(self._base + path, response.headers.get("Location", ""))
            if method == "GET" and target == self._base + PORTFORWARD:
                # gluetun v3.41+ moved the legacy route here (an upgraded gluetun).
                log.debug("gluetun redirects %s to %s", what, PORTFORWARD)
                self._legacy = False
                what, path = f"GET {PORTFORWARD}", PORTFORWARD
                response = self._send(method, PORTFORWARD, body)
            else:
                raise GluetunReplyError(
                    f"gluetun's control server at {self.url} redirects {what} to "
                    f"{_shown_url(target)}: check GLUETUN_CONTROL_URL"
                )
        if check and response.status_code >= 300:
            self._raise_for(response, what, path)
        return response

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> requests.Response:
        try:
            with self._lock:
                return limits.fetch(
                    self._session,
                    method,
                    self._base + path,
                    deadline=self._timeout,
                    json=body,
                    allow_redirects=False,
                )
        except limits.ReplyTooLarge as exc:
            raise GluetunReplyError(
                f"gluetun's control server at {self.url} sent an oversized reply to {method} "
                f"{path} ({exc}): check GLUETUN_CONTROL_URL points at gluetun's control server"
            ) from None
        except requests.RequestException as exc:
            raise GluetunUnavailableError(
                f"cannot reach gluetun's control server at {self.url} for {method} {path} "
                f"({redact.redact(limits.reason(exc))}): check GLUETUN_CONTROL_URL and that "
                "gluetun is running (its control server listens on port 8000)"
            ) from None

    def _raise_for(self, response: requests.Response, what: str, path: str) -> None:
        code = response.status_code
        if code in (401, 403):
            key = "GLUETUN_API_KEY was not accepted" if self._has_key else "no GLUETUN_API_KEY set"
            # Tagged releases before v3.41.2 do not even start with PUT listed in a role.
            old = f" (gluetun v3.41.1 and older refuse that route: {FOLLOW_FIX})" * (
                what.startswith("PUT")
            )
            raise GluetunAuthError(
                f"gluetun's control server at {self.url} refused {what} (HTTP {code}, {key}): "
                f'set GLUETUN_API_KEY to the API key of a role with auth = "apikey" whose '
                f'routes include "{what}", in {AUTH_FILE}{old}'
            )
        if code >= 500:
            raise GluetunNotReadyError(
                f"gluetun's control server at {self.url} failed {what} (HTTP {code}: "
                f"{_excerpt(response)}); trying again at the next check"
            )
        error = _RouteMissingError if code in (400, 404, 405) else GluetunReplyError
        raise error(
            f"gluetun's control server at {self.url} answered HTTP {code} to {what} "
            f"({_excerpt(response)}): check GLUETUN_CONTROL_URL points at gluetun's control "
            f"server and that gluetun is recent enough to serve {path}"
        )


class GluetunPortReader:
    """PORT_SOURCE=gluetun: the port gluetun forwards itself, polled by the follower."""

    def __init__(self, client: GluetunClient) -> None:
        self._client = client

    def read(self) -> ForwardedPorts:
        """What gluetun forwards now; raises GluetunError."""
        return self._client.read()

    def close(self) -> None:
        """Close the client."""
        self._client.close()

"""gluetun's control server: read the port gluetun forwards, or push ours into its firewall.

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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from pia_mqtt import redact
from pia_mqtt.errors import GluetunError
from pia_mqtt.model import Event, EventKind, SinkHealth, SyncState, valid_port

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pia_mqtt.model import Inbox, Snapshot

log = logging.getLogger(__name__)

PORTFORWARD = "/v1/portforward"
LEGACY_PORTFORWARD = "/v1/openvpn/portforwarded"
SINK_NAME = "gluetun"
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


class GluetunPushSink:
    """PIA mode inside gluetun's namespace: push our port so gluetun's firewall lets peers in.

    Every port change is PUT at once; every check GETs gluetun's ports and PUTs ours again
    if gluetun forgot it (restart) or was not ready. Work runs on one worker thread; a burst
    of changes collapses into one PUT of the newest port.
    """

    name = SINK_NAME

    def __init__(
        self,
        client: GluetunClient,
        inbox: Inbox,
        *,
        check_interval: float = 30.0,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._inbox = inbox
        self._interval = check_interval
        self._clock = clock
        self._cond = threading.Condition()
        self._wanted: int | None = None
        self._push = self._verify = self._busy = self._stopping = False
        self._reported: tuple[SyncState, int, str | None] | None = None
        self._last_sync: datetime | None = None
        self._thread = threading.Thread(target=self._run, name="pia-mqtt-gluetun", daemon=True)
        self._thread.start()

    @property
    def check_interval(self) -> float:
        """Seconds between the GET comparisons that detect a gluetun restart."""
        return self._interval

    def publish(self, snapshot: Snapshot) -> None:
        """Queue a PUT when the port changed; ports that are not valid are never pushed."""
        port = snapshot.port
        if not valid_port(port):
            return
        with self._cond:
            if port != self._wanted:
                self._wanted = port
                self._push = True
                self._cond.notify_all()

    def event(self, event: Event) -> None:
        """Events need nothing from gluetun."""

    def check(self, snapshot: Snapshot) -> None:
        """Queue a GET comparison (and a PUT if gluetun lost the port)."""
        self.publish(snapshot)
        with self._cond:
            if self._wanted is not None and not self._push:
                self._verify = True
                self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until queued pushes and checks are done; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._push or self._verify or self._busy), timeout
            )

    def close(self) -> None:
        """Stop the worker (waiting at most about 2 s) and close the client."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        self._client.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._push or self._verify)
                if self._stopping:
                    return
                push, self._push, self._verify = self._push, False, False
                port, self._busy = self._wanted, True
            try:
                if port is not None:
                    self._sync(port, push=push)
            except Exception:
                log.exception("gluetun worker failed unexpectedly; it will retry at the next check")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _sync(self, port: int, *, push: bool) -> None:
        why = "the port changed"
        try:
            if not push:
                held = self._client.forwarded_ports()
                if port in held:
                    self._report(SyncState.IN_SYNC, port, None, since=self._last_sync)
                    return
                why = f"gluetun held {held or 'no port'} (restarted?)"
                if held:
                    why += "; if gluetun forwards a port itself, set VPN_PORT_FORWARDING=off there"
                log.info("gluetun lost port %s: %s; pushing it again", port, why)
            self._client.set_forwarded_ports([port])
        except GluetunAuthError as exc:
            self._fail(SyncState.AUTH_FAILED, port, exc)
        except GluetunUnavailableError as exc:
            self._fail(SyncState.UNREACHABLE, port, exc)
        except GluetunError as exc:
            self._fail(SyncState.OUT_OF_SYNC, port, exc)
        else:
            now = self._clock()
            self._last_sync = now
            message = f"gluetun opened port {port} in its firewall ({why})"
            log.info("%s", message)
            self._report(SyncState.IN_SYNC, port, None, since=now)
            self._inbox.emit(Event(EventKind.GLUETUN_PUSHED, now, message, port=port))

    def _fail(self, state: SyncState, port: int, exc: GluetunError) -> None:
        error = redact.describe(exc)
        # One event per new failure state, not one per check while it lasts.
        new_state = self._reported is None or self._reported[:2] != (state, port)
        self._report(state, port, error, since=self._last_sync)
        if new_state:
            log.warning("gluetun: %s; retrying at the next check", error)
            self._inbox.emit(Event(EventKind.GLUETUN_FAILED, self._clock(), error, port=port))
        else:
            log.debug("gluetun still failing: %s", error)

    def _report(
        self, state: SyncState, port: int, error: str | None, *, since: datetime | None
    ) -> None:
        """Report health when it changed, not on every check."""
        key = (state, port, error)
        if key != self._reported:
            self._reported = key
            health = SinkHealth(state, port=port, last_sync=since, error=error)
            self._inbox.report(SINK_NAME, health)

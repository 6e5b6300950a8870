"""A local stand-in for gluetun's HTTP control server, modelling the real versions.

Read in gluetun's source (github.com/qdm12/gluetun, moved to passteque/gluetun in 2026-07;
the passteque snapshot read here ends at master 7eed6eaf of 2026-08-07, tag v3.41.3 is
3d1e20c5 of 2026-07-30): internal/server/{portforward,openvpn,helpers,handlerv1}.go,
internal/server/middlewares/auth, internal/portforward/{loop.go,service/}, internal/vpn.

Three behaviours, chosen per test with ``behaviour=``:

- ``Behaviour.TAGGED`` (v3.41.2 44143aa3 and v3.41.3 3d1e20c5; v3.41.1 7f22fb32 answers the
  same GET): ``GET /v1/portforward`` only. A ``PUT`` that passes the auth middleware (a role
  lists ``PUT /v1/portforward``, valid there since the cherry-pick 8269fad3) reaches the
  handler's default branch: 400 ``method PUT not supported`` (``errMethodNotSupported``,
  plain text). On v3.41.1 and older no role may list that route (gluetun refuses to start
  its control server: "route not supported by the control server"), so a PUT is 401.
- ``Behaviour.DEV_SELF_FORWARDING`` (development builds since a1ef736b of 2026-05-23, and
  b00279bc of 2026-07-29: ``qmcgaw/gluetun:latest``) with a provider that has port-forwarding
  code (private internet access, protonvpn, perfect privacy, privatevpn), whatever
  ``VPN_PORT_FORWARDING`` says: ``SetPortsForwarded`` returns "setting port forwarded at
  runtime is not supported with internally running port forwarding code" and the handler
  answers 500 ``failed setting forwarded ports``.
- ``Behaviour.CUSTOM`` (development builds with ``VPN_SERVICE_PROVIDER=custom``: the route
  came with 724cd3a1 of 2026-03-07, PR #2392; a1ef736b refused it for every provider until
  b00279bc of 2026-07-29): ``PUT {"ports": [N]}`` is 200 with an empty body, opens
  N and shows it in the GET; a tunnel restart (:meth:`FakeGluetun.restart_tunnel`)
  recreates the port-forward service, which forgets it.

Shared by all three:

- ``GET /v1/portforward`` (route since 3d1b6bc8, v3.41.0): ``{"port": N, "ports": [N]}``
  (763c5be1; ``port`` is ``ports[0]``, 0 when none). ``"ports": null`` only before the loop
  has created its first service (``Loop.GetPortsForwarded`` on a nil service: the process
  started, the tunnel not up yet; ``started=False`` here); every later service answers a
  list, ``[]`` while the tunnel is down. Before that, v3.41.0/v3.41.1 answered ``{"port":
  N}`` for 0 or 1 port and ``{"ports": [...]}`` for several (``older_shape=True``).
- Before the first service exists a PUT is 500 ``failed setting forwarded ports`` too
  (``port forwarding service not started``): the same body as the provider refusal. The
  GET's ``null`` is what tells the two apart.
- Legacy ``GET /v1/openvpn/portforwarded``: 301 to ``/v1/portforward`` since v3.41.0
  (``http.Redirect``); gluetun without the new route (``legacy_only=True``, v3.40.x)
  serves ``{"port": N}`` there and answers the new route 400 ``GET /portforward not found``.
- Auth middleware: the route key is ``"METHOD /path"``. Since v3.41.2 (and on master,
  3b9c9b24) an unknown path is 404 and a known path with another method 405 before any
  role is looked at. No role lists the route, or every role's check fails: 401
  ``Unauthorized``. ``apikey`` reads ``X-API-Key``. Tagged releases add a default
  ``public`` role (auth none) listing the GET routes, including both port-forward GETs;
  development builds have none (0c3e5d94, "auth is now required for all routes"). Here:
  ``api_key=None`` means no auth at all; with a key, ``key_routes`` are the apikey role's
  routes and ``public_routes`` the auth-none ones. gluetun never answers 403.
"""

from __future__ import annotations

import json
import threading
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

# What pia-mqtt must tell the user for each refusal (its fix, written out once for the tests).
NO_PUT_ROUTE = (
    "this gluetun release has no PUT /v1/portforward (tagged releases up to v3.41.3 serve GET "
    "only): set VPN_PORT_FORWARDING=on in gluetun and PORT_SOURCE=gluetun here"
)
PROVIDER_FORWARDS = (
    "gluetun refuses ports from outside while its provider forwards itself: set "
    "VPN_PORT_FORWARDING=on in gluetun and PORT_SOURCE=gluetun here, or use "
    "VPN_SERVICE_PROVIDER=custom"
)

GET_PF = "GET /v1/portforward"
PUT_PF = "PUT /v1/portforward"
GET_LEGACY = "GET /v1/openvpn/portforwarded"
ALL_ROUTES = frozenset({GET_PF, PUT_PF, GET_LEGACY})
# Paths the v3.41.2+ auth middleware knows, with their methods (validRoutes, abridged).
_KNOWN_PATHS = {
    "/v1/portforward": ("GET", "PUT"),
    "/v1/openvpn/portforwarded": ("GET",),
    "/v1/version": ("GET",),
}
_TEXT = "text/plain; charset=utf-8"
FAILED_SETTING = b"failed setting forwarded ports\n"


class Behaviour(StrEnum):
    """Which real gluetun the fake behaves like (see the module docstring)."""

    TAGGED = "tagged"
    DEV_SELF_FORWARDING = "dev-self-forwarding"
    CUSTOM = "custom"


class FakeGluetun:
    """gluetun's control server on 127.0.0.1, driven by the test."""

    def __init__(
        self,
        behaviour: Behaviour = Behaviour.CUSTOM,
        *,
        api_key: str | None = None,
        key_routes: frozenset[str] = ALL_ROUTES,
        public_routes: frozenset[str] = frozenset(),
        started: bool = True,
        legacy_only: bool = False,
        older_shape: bool = False,
    ) -> None:
        self.behaviour = behaviour
        self.api_key = api_key
        self.key_routes = key_routes
        self.public_routes = public_routes
        self.legacy_only = legacy_only
        self.older_shape = older_shape
        self.ports: list[int] | None = [] if started else None
        self.pushes: list[list[int]] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server = self._listen(0)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._serve()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()

    # -- what the test drives -----------------------------------------------------------
    def forward(self, *ports: int) -> None:
        """Act as if gluetun's own port forwarding got ``ports`` (none: port 0)."""
        with self.lock:
            self.ports = list(ports)

    def start(self) -> None:
        """The tunnel came up for the first time: the port-forward service exists now."""
        with self.lock:
            if self.ports is None:
                self.ports = []

    def restart_tunnel(self) -> None:
        """gluetun restarts its tunnel: a new port-forward service, every port forgotten.

        A provider that forwards itself gets its port back later (the test calls
        :meth:`forward`); with ``custom`` the pushed port stays forgotten until PUT again.
        """
        with self.lock:
            self.ports = []

    def stop_server(self) -> None:
        """The gluetun process goes away: connections are refused from now on."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def restart_process(self) -> None:
        """gluetun's process restarts: same address, nothing forwarded, no service yet."""
        self.stop_server()
        with self.lock:
            self.ports = None
        self._server = self._listen(self.port)
        self._serve()

    def held(self) -> list[int]:
        """Return the ports gluetun holds now."""
        with self.lock:
            return list(self.ports or [])

    def count(self, route: str) -> int:
        """How many requests for ``route`` ("METHOD /path") arrived."""
        with self.lock:
            return self.requests.count(route)

    # -- the server's logic -------------------------------------------------------------
    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request (the handler's logic, testable alone)."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/")
        route = f"{method} {path}"
        with self.lock:
            self.requests.append(route)
            if not self.legacy_only and not self.older_shape:
                # v3.41.2+ and master: path and method are checked before any role.
                methods = _KNOWN_PATHS.get(path)
                if methods is None:
                    return 404, {"Content-Type": _TEXT}, b"Not Found\n"
                if method not in methods:
                    return 405, {"Content-Type": _TEXT}, b"Method Not Allowed\n"
            if not self._authorized(route, headers, parts.query):
                return 401, {"Content-Type": _TEXT}, b"Unauthorized\n"
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/v1/portforward":
            if self.legacy_only:
                return 400, {"Content-Type": _TEXT}, f"{method} /portforward not found\n".encode()
            if method == "GET":
                return _json(self._get_reply())
            if self.behaviour is Behaviour.TAGGED:
                return 400, {"Content-Type": _TEXT}, f"method {method} not supported\n".encode()
            return self._put(body)
        if path == "/v1/openvpn/portforwarded" and method == "GET":
            if self.legacy_only:
                return _json(self._legacy_reply())
            return 301, {"Location": "/v1/portforward", "Content-Type": "text/html"}, b""
        return 400, {"Content-Type": _TEXT}, f"{method} {path} not found\n".encode()

    def _authorized(self, route: str, headers: dict[str, str], query: str) -> bool:
        if self.api_key is None or route in self.public_routes:
            return True
        if route not in self.key_routes:
            return False
        key = headers.get("x-api-key") or parse_qs(query).get("api_key", [""])[0]
        return key == self.api_key

    def _get_reply(self) -> dict[str, Any]:
        if self.older_shape:
            return self._legacy_reply()
        ports = self.ports
        return {"port": ports[0] if ports else 0, "ports": ports}

    def _legacy_reply(self) -> dict[str, Any]:
        ports = self.ports or []
        return {"ports": ports} if len(ports) > 1 else {"port": ports[0] if ports else 0}

    def _put(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            data = json.loads(body)
            ports = [int(p) for p in data["ports"]]
        except (ValueError, KeyError, TypeError):
            return 400, {"Content-Type": _TEXT}, FAILED_SETTING
        self.pushes.append(ports)
        if self.ports is None or self.behaviour is Behaviour.DEV_SELF_FORWARDING:
            # No service yet, or a provider with port-forwarding code: the same 500.
            return 500, {"Content-Type": _TEXT}, FAILED_SETTING
        self.ports = sorted(ports)
        return 200, {}, b""

    # -- plumbing -----------------------------------------------------------------------
    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        server.daemon_threads = True
        return server

    def _serve(self) -> None:
        # A short poll interval keeps shutdown() quick at the end of every test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()


def _json(data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    # Go's json.Encoder ends the document with a newline.
    body = (json.dumps(data, separators=(",", ":")) + "\n").encode()
    return 200, {"Content-Type": "application/json"}, body


def _handler_for(fake: FakeGluetun) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.answer(self.command, self.path, headers, body)
            self.send_response(HTTPStatus(status))
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Keep the test output quiet."""

    return Handler

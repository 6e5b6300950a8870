"""A local stand-in for gluetun's HTTP control server, and a recording engine inbox.

What the real server does, read in qdm12/gluetun (internal/server, internal/portforward,
internal/server/middlewares/auth), and what this fake copies:

- ``GET /v1/portforward`` (internal/server/portforward.go): ``{"port": N, "ports": [N]}``,
  ``port`` being ``ports[0]`` ("TODO v4 remove"). Nothing forwarded: ``{"port": 0, "ports":
  []}``, or ``"ports": null`` before the port forwarding service object exists (Loop
  returns a nil slice). An earlier release answered ``{"port": N}`` for 0 or 1 port and
  ``{"ports": [...]}`` for several (``older_shape=True`` here).
- ``PUT /v1/portforward`` with ``{"ports": [N, ...]}``: 200 and an empty body; a body that
  does not decode: 400 ``failed setting forwarded ports``; ``SetPortsForwarded`` failing:
  500 ``failed setting forwarded ports`` (plain text, ``http.Error``). Before its loop has
  started gluetun cannot take ports: ``started=False`` here answers that 500 and a GET shows
  ``"ports": null``.
- Legacy ``GET /v1/openvpn/portforwarded`` (internal/server/openvpn.go): ``{"port": N}``
  (0 when none), ``{"ports": [...]}`` for several. Newer releases redirect it to
  ``/v1/portforward``; the fake answers it directly.
- A gluetun without the new route (``legacy_only=True``): handlerV1's default branch answers
  400 ``GET /portforward not found`` (the ``/v1`` prefix is already stripped).
- Auth middleware: the route key is ``"METHOD /path"`` (URL path). No role lists the
  route: 401 ``Unauthorized``. Every role's check fails: 401 ``Unauthorized`` (basic adds
  ``WWW-Authenticate``). ``apikey`` reads ``X-API-Key`` (or ``?api_key=``) and compares
  SHA-256 digests in constant time. Methods are ``none``, ``basic``, ``apikey``; with no
  config file the default ``public`` role (auth none) lists the documented routes, which
  include ``GET /v1/openvpn/portforwarded`` but not the ``/v1/portforward`` routes.
  Here: ``api_key=None`` means no auth at all (older gluetun); with a key, ``key_routes``
  are the apikey role's routes and ``public_routes`` the auth-none ones. gluetun itself
  never answers 403 (a reverse proxy might).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

GET_PF = "GET /v1/portforward"
PUT_PF = "PUT /v1/portforward"
GET_LEGACY = "GET /v1/openvpn/portforwarded"
ALL_ROUTES = frozenset({GET_PF, PUT_PF, GET_LEGACY})


class FakeGluetun:
    """gluetun's control server on 127.0.0.1, driven by the test."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        key_routes: frozenset[str] = ALL_ROUTES,
        public_routes: frozenset[str] = frozenset(),
        started: bool = True,
        legacy_only: bool = False,
        older_shape: bool = False,
    ) -> None:
        self.api_key = api_key
        self.key_routes = key_routes
        self.public_routes = public_routes
        self.started = started
        self.legacy_only = legacy_only
        self.older_shape = older_shape
        self.ports: list[int] | None = [] if started else None
        self.pushes: list[list[int]] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps shutdown() quick at the end of every test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def forward(self, *ports: int) -> None:
        """Act as if gluetun's own port forwarding got ``ports`` (none: port 0)."""
        with self.lock:
            self.ports = list(ports)

    def start(self) -> None:
        """Start gluetun's port forwarding loop: PUT works from now on."""
        with self.lock:
            self.started = True
            if self.ports is None:
                self.ports = []

    def restart(self) -> None:
        """Restart gluetun: everything pushed is forgotten, the loop is up again."""
        with self.lock:
            self.ports = []
            self.started = True

    def held(self) -> list[int]:
        """Return the ports gluetun holds now."""
        with self.lock:
            return list(self.ports or [])

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """Status, content type and body for one request (the handler's logic, testable alone)."""
        parts = urlsplit(target)
        route = f"{method} {parts.path.rstrip('/')}"
        with self.lock:
            self.requests.append(route)
            if not self._authorized(route, headers, parts.query):
                return 401, "text/plain; charset=utf-8", b"Unauthorized\n"
            if route in (GET_PF, PUT_PF) and self.legacy_only:
                return (
                    400,
                    "text/plain; charset=utf-8",
                    f"{method} /portforward not found\n".encode(),
                )
            if route == GET_PF:
                return _json(self._get_reply())
            if route == GET_LEGACY:
                return _json(self._legacy_reply())
            if route == PUT_PF:
                return self._put(body)
        return 400, "text/plain; charset=utf-8", f"{method} {parts.path} not found\n".encode()

    def _authorized(self, route: str, headers: dict[str, str], query: str) -> bool:
        if self.api_key is None or route in self.public_routes:
            return True
        if route not in self.key_routes:
            return False
        key = headers.get("x-api-key") or parse_qs(query).get("api_key", [""])[0]
        return key == self.api_key

    def _get_reply(self) -> dict[str, Any]:
        ports = self.ports
        if self.older_shape:
            return self._legacy_reply()
        return {"port": ports[0] if ports else 0, "ports": ports}

    def _legacy_reply(self) -> dict[str, Any]:
        ports = self.ports or []
        return {"ports": ports} if len(ports) > 1 else {"port": ports[0] if ports else 0}

    def _put(self, body: bytes) -> tuple[int, str, bytes]:
        try:
            data = json.loads(body)
            ports = [int(p) for p in data["ports"]]
        except (ValueError, KeyError, TypeError):
            return 400, "text/plain; charset=utf-8", b"failed setting forwarded ports\n"
        self.pushes.append(ports)
        if not self.started:
            return 500, "text/plain; charset=utf-8", b"failed setting forwarded ports\n"
        self.ports = ports
        return 200, "", b""


def _json(data: dict[str, Any]) -> tuple[int, str, bytes]:
    # Go's json.Encoder ends the document with a newline.
    return 200, "application/json", (json.dumps(data, separators=(",", ":")) + "\n").encode()


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
            status, ctype, payload = fake.answer(self.command, self.path, headers, body)
            self.send_response(HTTPStatus(status))
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Keep the test output quiet."""

    return Handler

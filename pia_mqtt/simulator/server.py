"""The simulator's HTTPS servers: plumbing, fault injection, canned replies, token endpoint.

Each :class:`Endpoint` serves real TLS on its own thread and answers through ``route``;
``fail_next``/``delay_next`` inject faults. An injected reply counts as a failed request
in the stats.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509

from pia_mqtt.simulator.certs import leaf_context

if TYPE_CHECKING:
    from pia_mqtt.simulator.pia import PiaSimulator

_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_IO_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body and content type."""

    status: int
    body: str
    content_type: str = _JSON


BUSY = Reply(409, '{"message": "Port 51813 is busy. Please use another server"}')
BAD_SIGNATURE = Reply(401, '{"status": "", "message": "bad signature"}')
UNAUTHORIZED_CLIENT = Reply(401, '{"status": "ERROR", "message": "Unauthorized client"}')
NO_AUTH_DATA = Reply(401, '{"status": "ERROR", "message": "no auth data"}')
NOT_OK = Reply(200, '{"status": "ERROR", "message": "port forwarding is not available"}')
SERVER_ERROR = Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", _HTML)
HTML_PAGE = Reply(200, "<!DOCTYPE html><html><body><p>Captive portal</p></body></html>", _HTML)
BAD_JSON = Reply(200, '{"status": "OK", "payload": "eyJwb3J0Ijo')
WRONG_CREDENTIALS = Reply(401, '{"message": "Unauthorized"}')


def payload_reply(payload: dict[str, Any] | str, signature: str = "c2lnbmF0dXJl") -> Reply:
    """Build a status-OK getSignature reply carrying ``payload`` (a dict is base64'd JSON)."""
    if isinstance(payload, dict):
        payload = base64.b64encode(json.dumps(payload).encode()).decode()
    body = {"status": "OK", "payload": payload, "signature": signature}
    return Reply(200, json.dumps(body))


# --- HTTPS endpoints -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered writes: headers and body leave in one segment. Unbuffered, Nagle's algorithm
    # and delayed ACKs stalled every reply by ~40 ms.
    wbufsize = -1
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if body and "urlencoded" in self.headers.get("Content-Type", ""):
            query.update(
                {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            )
        reply = self.server.endpoint.answer(url.path, query)
        data = reply.body.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Silent: request lines carry tokens and signatures."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: Endpoint, ctx: ssl.SSLContext) -> None:
        self.endpoint = endpoint
        self.ssl_context = ctx
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the loop.
        request.settimeout(_IO_TIMEOUT)
        with self.lock:
            self.open.add(request)
        self.endpoint.count_connection()
        try:
            with self.ssl_context.wrap_socket(request, server_side=True) as tls:
                with self.lock:
                    self.open.add(tls)
                try:
                    _Handler(tls, client_address, self)
                finally:
                    with self.lock:
                        self.open.discard(tls)
        except OSError:
            pass  # a client that gave up or rejected our certificate
        finally:
            with self.lock:
                self.open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that time out or hang up are part of the tests."""

    def drop_connections(self) -> None:
        with self.lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Endpoint:
    """An HTTPS server with fault injection; subclasses route requests."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self._ctx = ctx
        self._lock = threading.Lock()
        self._faults: list[Reply] = []
        self._delays: list[float] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether it accepts connections."""
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on the same port; a no-op when running."""
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self, self._ctx)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every open connection: clients see connection refused."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        thread.join()
        self._server = self._thread = None

    def fail_next(self, reply: Reply, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``reply`` instead of the real answer."""
        with self._lock:
            self._faults.extend([reply] * times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` answers for ``seconds`` (a client timeout)."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def count_connection(self) -> None:
        """Count an accepted TCP connection (gateways keep the number)."""

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        """Pick the injected fault or the real answer (called on a connection thread)."""
        with self._lock:
            delay = self._delays.pop(0) if self._delays else 0.0
            fault = self._faults.pop(0) if self._faults else None
        if delay:
            self._stopping.wait(delay)
        return self.route(path, query, fault)

    def route(self, path: str, query: dict[str, str], fault: Reply | None) -> Reply:
        """Answer one request; ``fault`` replaces the real answer when set."""
        raise NotImplementedError


@dataclass(frozen=True)
class TokenStats:
    """What the token endpoint saw."""

    requests: int = 0
    issued: int = 0


class TokenEndpoint(Endpoint):
    """``POST /api/client/v2/token`` with form fields ``username`` and ``password``."""

    PATH = "/api/client/v2/token"

    def __init__(self, sim: PiaSimulator, host: str, port: int) -> None:
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        with contextlib.suppress(ValueError):
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        ctx = leaf_context(sim.material, token=True, cn=host, names=names, stem=f"token-{id(self)}")
        super().__init__(host, port, ctx)
        self._sim = sim
        self._stats = TokenStats()

    def stats(self) -> TokenStats:
        """Counters so far."""
        with self._lock:
            return self._stats

    def route(self, path: str, query: dict[str, str], fault: Reply | None) -> Reply:
        """Check the credentials and hand out a token."""
        with self._lock:
            self._stats = replace(self._stats, requests=self._stats.requests + 1)
        if fault is not None:
            return fault
        if path != self.PATH:
            return Reply(404, '{"message": "not found"}')
        user, password = query.get("username", ""), query.get("password", "")
        expected = self._sim.users.get(user)
        if expected is None or not hmac.compare_digest(expected, password):
            return WRONG_CREDENTIALS
        with self._lock:
            self._stats = replace(self._stats, issued=self._stats.issued + 1)
        return Reply(200, json.dumps({"token": self._sim.new_token()}))

"""The HTTP sink: keeps the board and serves it from one thread.

Why one thread and not ``ThreadingHTTPServer``: the answers are a few kilobytes built from
an in-memory copy, so one thread handles a probe or a scrape in well under a millisecond,
and a thread per connection would let many slow clients cost a thread stack each. A slow
or silent client is cut off after :data:`CLIENT_TIMEOUT` seconds, requests are capped at
:data:`MAX_REQUEST` bytes, and every response closes its connection (HTTP/1.0), so no
client can hold the thread for long. The engine thread only swaps references in the
board (:mod:`pia_mqtt.http.board`); it never waits for this thread.

``socketserver.TCPServer`` is used rather than ``http.server.HTTPServer`` because the
latter looks up the host's name at bind time (a DNS query); nothing here resolves names.
The serving loop sleeps in ``select`` until a client connects or :meth:`HttpSink.close`
writes to its wake-up socket: no poll interval, nothing wakes periodically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from ipaddress import ip_address
from typing import Any, Protocol

from pia_mqtt import redact
from pia_mqtt.core.model import Event, Snapshot, Status
from pia_mqtt.errors import ConfigError
from pia_mqtt.http import metrics, page, probes
from pia_mqtt.http.board import Board

log = logging.getLogger(__name__)

CLIENT_TIMEOUT = 2.0
MAX_REQUEST = 8192  # request line + headers; the endpoint never reads a body
CLOSE_TIMEOUT = 2.0
ALLOWED = "GET, HEAD"


class _TooLargeError(Exception):
    """The request line and headers went past MAX_REQUEST."""


class _LineReader(Protocol):
    def readline(self, size: int | None = -1, /) -> bytes: ...
    def close(self) -> None: ...


class _CappedReader:
    """The part of a file object ``http.server`` reads headers with, capped in size."""

    def __init__(self, raw: _LineReader, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise _TooLargeError
        want = self._left if size < 0 else min(size, self._left)
        line = self._raw.readline(want)
        self._left -= len(line)
        if self._left <= 0 and not line.endswith(b"\n"):
            raise _TooLargeError
        return line

    def read(self, _size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        self._raw.close()


def _redacted(value: Any) -> Any:
    # Every string of the document through redact (as the MQTT sink does); importing the
    # MQTT package's helper would load paho for nothing.
    if isinstance(value, str):
        return redact.redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


@dataclass(frozen=True)
class Reply:
    """One response: status, content type, body."""

    status: int
    content_type: str
    body: bytes


def _text(status: int, text: str) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", (text + "\n").encode())


class App:
    """Routes a path to a reply, from a copy of the board (runs on the HTTP thread)."""

    def __init__(
        self,
        board: Board,
        *,
        version: str,
        refresh_interval: float,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self.board = board
        self._version = version
        self._interval = refresh_interval
        self._clock = clock
        self._monotonic = monotonic

    def reply(self, path: str) -> Reply:
        """The reply to a GET of ``path`` (query string ignored)."""
        view = self.board.view()
        route = path.split("?", 1)[0]
        if route == "/":
            html = page.render(view, now=self._clock(), version=self._version)
            return Reply(200, page.CONTENT_TYPE, html.encode())
        if route == "/status":
            document = _redacted(view.snapshot.to_json())
            return Reply(200, "application/json", json.dumps(document).encode())
        if route == "/metrics":
            text = metrics.render(view, version=self._version)
            return Reply(200, metrics.CONTENT_TYPE, text.encode())
        if route == "/healthz":
            verdict = probes.liveness(view, monotonic_now=self._monotonic())
        elif route == "/readyz":
            verdict = probes.readiness(view, now=self._clock(), refresh_interval=self._interval)
        else:
            return _text(404, "not found: try /, /healthz, /readyz, /status or /metrics")
        prefix = "ok: " if verdict.ok else "not ok: "
        return _text(200 if verdict.ok else 503, prefix + verdict.reason)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"

    def version_string(self) -> str:
        # No Python version in the Server header: nothing on the endpoint helps an attacker.
        return "pia-mqtt"

    def setup(self) -> None:
        super().setup()
        self.rfile = _CappedReader(self.rfile, MAX_REQUEST)  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _TooLargeError:
            self.command, self.requestline, self.request_version = "", "", "HTTP/1.0"
            self.close_connection = True
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def _answer(self, *, body: bool) -> None:
        reply = self.server.app.reply(self.path)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        body = b"read-only: only GET and HEAD\n"
        self.send_header("Allow", ALLOWED)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # Every method HTTP defines that writes or tunnels: 405 with Allow (unknown ones: 501).
    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815
    do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("%s %s", self.client_address[0], format % args)


class _Server(socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], app: App, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, _request: object, client_address: Any) -> None:
        # Called by socketserver inside its except block: the traceback is the bug report.
        log.warning("HTTP request from %s failed", client_address[0], exc_info=True)  # noqa: LOG014


class HttpSink:
    """A sink that keeps the board and serves it on ``HTTP_ADDRESS:HTTP_PORT``."""

    name = "http"

    def __init__(
        self,
        address: str,
        port: int,
        *,
        version: str,
        refresh_interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = Board(
            Snapshot(status=Status.STARTING, updated_at=clock()), monotonic=monotonic
        )
        app = App(self._board, version=version, refresh_interval=refresh_interval, clock=clock,
                  monotonic=monotonic)  # fmt: skip
        family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
        try:
            self._server = _Server((address, port), app, family)
        except OSError as exc:
            raise ConfigError(
                [(f"HTTP_PORT: cannot listen on {address} port {port} ({exc.strerror}): "
                  "choose a free port, or an HTTP_ADDRESS of this host")]
            ) from None  # fmt: skip
        self._wake_read, self._wake_write = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="pia-mqtt-http", daemon=True)
        self._thread.start()
        log.info("status page on http://%s/ (HTTP_ADDRESS, HTTP_PORT)", self.url_host)

    @property
    def bound(self) -> tuple[str, int]:
        """The address and port actually listened on (HTTP_PORT 0 picks a free one in tests)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url_host(self) -> str:
        """``host:port`` for a URL (IPv6 in brackets)."""
        host, port = self.bound
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # --- Sink interface (engine thread: never blocks) ------------------------------------
    def publish(self, snapshot: Snapshot) -> None:
        """Keep the snapshot for the next request."""
        self._board.publish(snapshot)

    def event(self, event: Event) -> None:
        """Keep the event (the last few are on the page) and count it."""
        self._board.record(event)

    def check(self, snapshot: Snapshot) -> None:
        """The engine's heartbeat: proves to ``/healthz`` that its loop runs."""
        del snapshot
        self._board.beat()

    @property
    def check_interval(self) -> float | None:
        """The heartbeat period (see :mod:`pia_mqtt.http.probes`)."""
        return probes.HEARTBEAT

    def close(self) -> None:
        """Stop the serving thread (bounded) and release the port."""
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join(CLOSE_TIMEOUT)
        self._server.server_close()
        self._wake_read.close()
        self._wake_write.close()

    # --- the HTTP thread -------------------------------------------------------------------
    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.socket, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fileobj is self._wake_read for key, _ in ready):
                    return
                self._server.timeout = 0
                self._server.handle_request()

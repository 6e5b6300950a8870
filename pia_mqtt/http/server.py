"""The HTTP sink: keeps the board and serves it from one thread.

Why one thread and not a thread per connection (``ThreadingHTTPServer``): the answers
are a few kilobytes built from an in-memory copy, so one thread handles a probe or a
scrape in well under a millisecond, and a thread per connection would let many slow
clients cost a thread stack each. A slow or silent client is cut off after
:data:`CLIENT_TIMEOUT` seconds, requests are capped at
:data:`~pia_mqtt.http.wire.MAX_REQUEST` bytes, and every response closes its connection,
so no client can hold the thread for long. The engine thread only swaps references in
the board (:mod:`pia_mqtt.http.board`); it never waits for this thread.

``socketserver.TCPServer`` with :mod:`pia_mqtt.http.wire` rather than ``http.server``:
``HTTPServer`` looks up the host's name at bind time (a DNS query; nothing here resolves
names), and its handler module costs 0.6 MiB of imports (see ``wire``). The serving loop
sleeps in ``select`` until a client connects or :meth:`HttpSink.close` writes to its
wake-up socket: no poll interval, nothing wakes periodically.
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
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any

from pia_mqtt import redact
from pia_mqtt.core.model import Event, Snapshot, Status
from pia_mqtt.errors import ConfigError
from pia_mqtt.http import metrics, page, probes, wire
from pia_mqtt.http.board import Board
from pia_mqtt.http.wire import Reply, Request

log = logging.getLogger(__name__)

CLIENT_TIMEOUT = 2.0
# Shutdown must finish within 2 s for the whole process (MQTT says offline after this), so
# close() does not wait out a slow client: the daemon thread ends with the process.
CLOSE_TIMEOUT = 0.2


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

    def answer(self, request: Request) -> Reply:
        """The reply to one request: read methods are routed, the others refused."""
        if request.method in wire.READ_METHODS:
            return self.reply(request.path)
        if request.method in wire.WRITE_METHODS:
            return wire.text_reply(405, "read-only: only GET and HEAD", ("Allow", wire.ALLOWED))
        return wire.text_reply(501, "not implemented: only GET and HEAD")

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
            return wire.text_reply(404, "not found: try /, /healthz, /readyz, /status or /metrics")
        prefix = "ok: " if verdict.ok else "not ok: "
        return wire.text_reply(200 if verdict.ok else 503, prefix + verdict.reason)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT  # socket timeout for every read and write of this client

    def handle(self) -> None:
        try:
            request = wire.read_request(self.rfile)
        except wire.RequestError as exc:
            self.wfile.write(wire.encode_reply(wire.text_reply(exc.status, exc.status.phrase)))
            return
        except OSError:  # timed out or reset: nothing to answer
            return
        if request is None:
            return
        reply = self.server.app.answer(request)
        log.debug("%s %s %s -> %d", self.client_address[0], request.method, request.path,
                  reply.status)  # fmt: skip
        self.wfile.write(wire.encode_reply(reply, body=request.method != "HEAD"))


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
        """Wake the serving thread and wait for it, bounded; it releases the port itself."""
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join(CLOSE_TIMEOUT)

    # --- the HTTP thread -------------------------------------------------------------------
    def _serve(self) -> None:
        self._server.timeout = 0  # handle_request runs only once select says a client waits
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._server.socket, selectors.EVENT_READ)
                selector.register(self._wake_read, selectors.EVENT_READ)
                while True:
                    ready = selector.select()
                    if any(key.fileobj is self._wake_read for key, _ in ready):
                        return
                    self._server.handle_request()
        finally:
            # Here rather than in close(): close() may return while a slow client still
            # holds this thread, and the sockets must outlive that request.
            self._server.server_close()
            self._wake_read.close()
            self._wake_write.close()

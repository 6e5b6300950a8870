"""A misbehaving HTTP(S) peer on 127.0.0.1: drips its reply, or sends one that is too large.

Used by the deadline tests of every client (PIA, gluetun, qBittorrent, and the ones to
come): a real socket server, so the client's real connect, TLS and read paths run.

Modes:
- ``headers``: the status line, then one header byte every ``interval`` (never ends)
- ``body``: complete headers announcing 1,000 bytes, then one body byte every ``interval``
- ``handshake``: a TLS record header, then one byte every ``interval`` (a stuck handshake;
  use without ``ctx``)
- ``large``: a complete 200 reply of 70,000 bytes with no Content-Length (read to close)
- ``declared``: headers announcing a 10 MB body, then the body slowly
- ``redirect``: a 302 to itself with a 70,000-byte body (requests reads it before following)
- ``ok``: a small complete JSON reply (``{"ok": true}``)
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Self

_LARGE = 70_000


class DripServer:
    """Serve every connection in ``mode`` until stopped; ``ctx`` wraps each in TLS first."""

    def __init__(
        self,
        mode: str,
        *,
        ctx: ssl.SSLContext | None = None,
        interval: float = 0.2,
        port: int = 0,
        limit: float = 8.0,
    ) -> None:
        self.mode = mode
        self._ctx = ctx
        self._interval = interval
        # A drip ends (connection closed) after ``limit`` s, so that code without an overall
        # deadline fails the test's time bound instead of hanging the suite.
        self._limit = limit
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.05)  # accept() wakes to see the stop flag
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        scheme = "https" if self._ctx else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(30)  # accepted sockets inherit the listener's timeout
            peer: socket.socket = conn
            if self.mode == "handshake":
                conn.recv(4096)
                conn.sendall(b"\x16\x03\x03\x40\x00")
                self._drip(conn, b"\x00")
                return
            if self._ctx is not None:
                peer = self._ctx.wrap_socket(conn, server_side=True)
            with peer:
                _read_request(peer)
                with self._lock:
                    self.requests += 1
                self._reply(peer)

    def _reply(self, peer: socket.socket) -> None:
        if self.mode == "headers":
            peer.sendall(b"HTTP/1.1 200 OK\r\n")
            self._drip(peer, b"X")
        elif self.mode == "body":
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            peer.sendall(b"Content-Length: 1000\r\n\r\n")
            self._drip(peer, b" ")
        elif self.mode == "large":
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            peer.sendall(b"Connection: close\r\n\r\n" + b" " * _LARGE)
        elif self.mode == "redirect":
            peer.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\n")
            peer.sendall(b"Connection: close\r\n\r\n" + b" " * _LARGE)
        elif self.mode == "declared":
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
            self._drip(peer, b" " * 1000)
        elif self.mode == "ok":
            body = b'{"ok": true}'
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            peer.sendall(head + body)
            _read_request(peer)  # keep-alive: a second request on the same connection
            self.mode = "body"  # ...is answered by dripping (a reused connection's deadline)
            self._reply(peer)
        else:
            raise ValueError(self.mode)

    def _drip(self, peer: socket.socket, piece: bytes) -> None:
        ends = time.monotonic() + self._limit
        while not self._stop.wait(self._interval) and time.monotonic() < ends:
            peer.sendall(piece)


def _read_request(peer: socket.socket) -> None:
    """Read one request's head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = peer.recv(4096)
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = peer.recv(4096)
        if not chunk:
            return
        rest += chunk

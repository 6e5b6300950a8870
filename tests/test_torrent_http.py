"""torrent/http.py: one overall deadline per request and a 64 KiB reply cap, on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from pia_mqtt.errors import TorrentUnavailableError
from pia_mqtt.torrent.http import MAX_REPLY_BYTES, Target, post

Handler = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """Start a raw TCP server on 127.0.0.1 running ``handler`` per connection; its URL."""
    servers: list[socket.socket] = []
    stop = threading.Event()

    def start(handler: Handler) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=_guarded, args=(handler, conn), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/rpc"

    yield start
    stop.set()
    for server in servers:
        server.close()


def _guarded(handler: Handler, conn: socket.socket) -> None:
    with conn:
        try:
            conn.recv(65536)
            handler(conn)
        except OSError:
            pass  # the client gave up: that is the point


def drip(conn: socket.socket) -> None:
    """Headers at once, then one body byte every 0.1 s for 20 s (each read is quick)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
    for _ in range(200):
        conn.sendall(b"x")
        time.sleep(0.1)


def silent(conn: socket.socket) -> None:
    """Accept the request and never answer."""
    time.sleep(20)


def chunked_flood(conn: socket.socket) -> None:
    """An endless chunked body (no Content-Length to refuse it by)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        conn.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")


def announced_big(conn: socket.socket) -> None:
    """A Content-Length over the cap (nothing needs to be read to refuse it)."""
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_REPLY_BYTES + 1}\r\n\r\n".encode())
    time.sleep(20)


def small(conn: socket.socket) -> None:
    """A normal small reply."""
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Id: 7\r\n\r\n{"ok":true}')


TARGET_HINT = "check TRANSMISSION_URL"


def _post(url: str, deadline: float = 0.5) -> tuple[float, TorrentUnavailableError | None]:
    start = time.monotonic()
    try:
        with requests.Session() as session:
            post(session, Target("Transmission", url, TARGET_HINT), "reading", deadline=deadline)
    except TorrentUnavailableError as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


@pytest.mark.parametrize("handler", [drip, silent], ids=["dripping", "silent"])
def test_a_slow_reply_ends_at_the_overall_deadline(
    serve: Callable[[Handler], str], handler: Handler
) -> None:
    """Dripping or silent: refused once the whole request passed its deadline, not per read."""
    elapsed, error = _post(serve(handler), deadline=0.5)
    assert error is not None
    assert "did not answer within 0.5 s" in str(error)
    assert TARGET_HINT in str(error)
    assert elapsed < 5  # the dripping reply would take 20 s


@pytest.mark.parametrize("handler", [chunked_flood, announced_big], ids=["chunked", "announced"])
def test_a_reply_over_64_kib_is_refused(serve: Callable[[Handler], str], handler: Handler) -> None:
    """Refused when Content-Length says so or as soon as more than 64 KiB has arrived."""
    _, error = _post(serve(handler), deadline=5)
    assert error is not None
    assert "over 64 KiB" in str(error)


def test_a_small_reply_is_returned_whole(serve: Callable[[Handler], str]) -> None:
    """Status, headers (any case) and the body come back."""
    with requests.Session() as session:
        reply = post(session, Target("Transmission", serve(small), TARGET_HINT), "reading")
    assert (200, "7", b'{"ok":true}') == (reply.status, reply.headers["x-id"], reply.body)


def test_nothing_listening_is_reported_with_the_reason() -> None:
    """Connection refused is named, with the hint."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        url = f"http://127.0.0.1:{taken.getsockname()[1]}/rpc"
    _, error = _post(url)
    assert error is not None
    assert "not reachable (Connection refused)" in str(error)

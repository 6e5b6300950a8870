"""One overall deadline and a 64 KiB cap for every outside HTTP request (pia_mqtt.limits)."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from pia_mqtt import limits
from tests.drip import DripServer

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_dripping_reply_ends_at_the_deadline(mode: str) -> None:
    """A peer sending a byte every 0.2 s (each read is quick) is cut at the overall deadline."""
    with DripServer(mode) as server:
        started = time.monotonic()
        with pytest.raises(limits.DeadlineExceeded, match="no complete reply within 1 s"):
            limits.fetch(limits.session(), "GET", server.url, deadline=1.0)
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0


def test_a_stuck_tls_handshake_ends_at_the_deadline() -> None:
    """A server that drips its TLS handshake does not hold the request past its deadline."""
    with DripServer("handshake") as server:
        started = time.monotonic()
        with pytest.raises(limits.DeadlineExceeded):
            limits.fetch(limits.session(), "GET", f"https://127.0.0.1:{server.port}/", deadline=1.0)
        assert time.monotonic() - started < 2.0


def test_a_deadline_exceeded_is_a_requests_timeout() -> None:
    """Callers keep translating requests' exceptions: the deadline is a requests.Timeout."""
    assert issubclass(limits.DeadlineExceeded, requests.Timeout)
    assert issubclass(limits.ReplyTooLarge, requests.RequestException)


@pytest.mark.parametrize("mode", ["large", "declared", "redirect"])
def test_a_reply_over_64_kib_is_refused(mode: str) -> None:
    """A reply over 64 KiB is refused at once.

    70,000 bytes read to close, a Content-Length of 10 MB, or a redirect's 70,000-byte body
    (requests reads it itself before following the redirect).
    """
    with DripServer(mode) as server:
        started = time.monotonic()
        with pytest.raises(limits.ReplyTooLarge, match="larger than 64 KiB"):
            limits.fetch(limits.session(), "GET", server.url, deadline=5.0)
        assert time.monotonic() - started < 1.0


def test_a_reused_connection_is_bounded_too() -> None:
    """The second request on a kept-alive connection gets its own deadline."""
    with DripServer("ok") as server:
        session = limits.session()
        first = limits.fetch(session, "GET", server.url, deadline=5.0)
        assert {"ok": True} == first.json()
        started = time.monotonic()
        with pytest.raises(limits.DeadlineExceeded):
            limits.fetch(session, "GET", server.url, deadline=1.0)
        assert time.monotonic() - started < 2.0
        assert server.connections == 1


class _Gzip(http.server.BaseHTTPRequestHandler):
    """Answers with a small gzip body that unpacks to 1 MiB (a decompression bomb)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = gzip.compress(b" " * (1024 * 1024))
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Quiet."""


@pytest.fixture
def gzip_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 sending the gzip bomb; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gzip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_the_cap_counts_decoded_bytes(gzip_server: str) -> None:
    """A 1 KiB gzip body unpacking to 1 MiB is refused, not unpacked into memory."""
    with pytest.raises(limits.ReplyTooLarge):
        limits.fetch(limits.session(), "GET", gzip_server, deadline=5.0)


def test_a_small_reply_is_returned_whole() -> None:
    """An ordinary reply comes back complete, with content and JSON readable."""
    with DripServer("ok") as server:
        reply = limits.fetch(limits.session(), "GET", server.url, deadline=5.0)
    assert 200 == reply.status_code
    assert b'{"ok": true}' == reply.content


def _own_threads() -> list[str]:
    """Names of the threads that are not the drip server's."""
    return sorted(t.name for t in threading.enumerate() if "(_serve)" not in t.name)


def test_one_watchdog_thread_serves_every_request() -> None:
    """No thread per request: after the first request the same threads run, one watchdog."""
    with DripServer("ok") as server:
        limits.fetch(limits.session(), "GET", server.url, deadline=5.0)
        before = _own_threads()
        for _ in range(20):
            limits.fetch(limits.session(), "GET", server.url, deadline=5.0)
        assert before == _own_threads()
        assert 1 == before.count("pia-mqtt-deadlines")


def test_a_plain_requests_session_is_bounded_too() -> None:
    """A caller's own requests.Session (no bounded adapter) still gets the deadline."""
    with DripServer("body") as server, requests.Session() as plain:
        started = time.monotonic()
        with pytest.raises(limits.DeadlineExceeded):
            limits.fetch(plain, "GET", server.url, deadline=1.0)
        assert time.monotonic() - started < 2.0

"""HTTP/1.0 on the wire, just what a read-only endpoint needs (pure: bytes in, bytes out).

Not ``http.server``: its handler imports ``html`` (and the 2,000-entry ``html.entities``
table) for directory listings, 0.6 MiB of the daemon's 45 MiB budget for nothing used
here. Reading a request is a request line and headers, capped at :data:`MAX_REQUEST`
bytes; the endpoint never reads a body. Every reply closes the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

MAX_REQUEST = 8192  # request line + headers
ALLOWED = "GET, HEAD"
READ_METHODS = frozenset({"GET", "HEAD"})
# Methods HTTP defines that would write or tunnel: 405 with Allow (others are 501).
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})


class LineReader(Protocol):
    """What is read from: a buffered socket file."""

    def readline(self, size: int = -1, /) -> bytes:
        """One line, at most ``size`` bytes."""


@dataclass(frozen=True)
class Request:
    """The parts of a request the endpoint uses."""

    method: str
    path: str


@dataclass(frozen=True)
class Reply:
    """One response: status, content type, body, extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class RequestError(Exception):
    """The request cannot be served; ``status`` is the answer (400, 431)."""

    def __init__(self, status: HTTPStatus) -> None:
        self.status = status
        super().__init__(status.phrase)


def text_reply(status: int, text: str, *headers: tuple[str, str]) -> Reply:
    """A plain-text reply."""
    return Reply(status, "text/plain; charset=utf-8", (text + "\n").encode(), headers)


def read_request(rfile: LineReader, *, limit: int = MAX_REQUEST) -> Request | None:
    """Read the request line and headers; None when the client closed before a request."""
    left = limit
    lines: list[bytes] = []
    while True:
        line = rfile.readline(left + 1)
        if not line:
            if lines:
                raise RequestError(HTTPStatus.BAD_REQUEST)
            return None
        left -= len(line)
        if left < 0:
            raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        if line in (b"\r\n", b"\n"):
            if lines:
                break
            continue  # tolerate a stray empty line before the request line
        lines.append(line)
    parts = lines[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1].startswith("/"):
        raise RequestError(HTTPStatus.BAD_REQUEST)
    return Request(method=parts[0], path=parts[1])


def encode_reply(reply: Reply, *, body: bool = True) -> bytes:
    """Status line, headers and (unless HEAD) the body."""
    status = HTTPStatus(reply.status)
    head = [
        f"HTTP/1.0 {status.value} {status.phrase}",
        "Server: pia-mqtt",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (reply.body if body else b"")

"""One HTTP POST to a torrent client with an overall deadline and a reply size cap.

``requests``' own timeout is per socket read, so a reply that drips one byte a second never
times out. Here connect + headers share one urllib3 ``Timeout(total=...)``, and while the
body is read the socket's timeout is set to what is left before each read; a reply over
:data:`MAX_REPLY_BYTES` is refused as soon as it is seen (by ``Content-Length`` or while
reading). Errors are :class:`~pia_mqtt.errors.TorrentUnavailableError` saying what was being
done and what to check.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
import urllib3

from pia_mqtt.errors import TorrentUnavailableError
from pia_mqtt.redact import describe, redact

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEADLINE = 10.0
MAX_REPLY_BYTES = 64 * 1024
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


@dataclass(frozen=True)
class Reply:
    """A whole reply: status, headers (case-insensitive), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, limit: int = 80) -> str:
        """The start of the body as redacted text, for messages."""
        return redact(self.body[:limit].decode("utf-8", "replace").strip()) or "no body"


@dataclass(frozen=True)
class Target:
    """Who a request goes to, for messages: ``Transmission at http://...``, and the fix."""

    label: str
    url: str
    hint: str

    @property
    def where(self) -> str:
        """``Transmission at http://host:9091/transmission/rpc`` (redacted)."""
        return f"{self.label} at {redact(self.url)}"


def post(
    session: requests.Session,
    target: Target,
    doing: str,
    *,
    deadline: float = DEADLINE,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> Reply:
    """POST to ``target.url`` and read the whole reply within ``deadline`` seconds."""
    end = clock() + deadline
    too_slow = TorrentUnavailableError(
        f"{doing}: {target.where} did not answer within {deadline:g} s; {target.hint}"
    )
    # requests passes a urllib3 Timeout through (its stubs only name floats and tuples):
    # total= makes connect + waiting for the headers one budget.
    total: Any = urllib3.Timeout(total=deadline)
    try:
        response = session.post(
            target.url, timeout=total, stream=True, allow_redirects=False, **kwargs
        )
    except requests.Timeout:
        raise too_slow from None
    except requests.RequestException as exc:
        raise TorrentUnavailableError(
            f"{doing}: {target.where} is not reachable ({_reason(exc)}); {target.hint}"
        ) from None
    with response:
        try:
            body = _read_body(response, end, clock)
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
            raise too_slow from None
        except _TooBigError:
            raise TorrentUnavailableError(
                f"{doing}: {target.where} sent a reply over {MAX_REPLY_BYTES // 1024} KiB; "
                f"{target.hint}"
            ) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise TorrentUnavailableError(
                f"{doing}: {target.where} broke off its reply ({_reason(exc)}); {target.hint}"
            ) from None
        return Reply(response.status_code, response.headers, body)


class _TooBigError(Exception):
    """The reply is over MAX_REPLY_BYTES."""


def _read_body(response: requests.Response, end: float, clock: Callable[[], float]) -> bytes:
    """Read the body, each read bounded by the time left; refuse it past the size cap."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_REPLY_BYTES:
        raise _TooBigError
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    body = bytearray()
    while True:
        left = end - clock()
        if left <= 0:
            raise TimeoutError
        if isinstance(sock, socket.socket):
            sock.settimeout(left)
        chunk = response.raw.read1(8192, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise _TooBigError


def _reason(exc: BaseException) -> str:
    """The OS-level reason (``Connection refused``) from requests' nested error text."""
    text = describe(exc)
    found = _ERRNO_RE.search(text)
    return found.group(1).strip() if found else text

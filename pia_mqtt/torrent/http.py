"""One HTTP POST to a torrent client with an overall deadline and a reply size cap.

``requests``' own timeout is per socket read, so a reply that drips one byte a second never
times out. :func:`post` goes through :func:`pia_mqtt.limits.fetch`, the one mechanism every
outside request uses: one deadline for connect, TLS, headers and the whole body, and a
reply over :data:`MAX_REPLY_BYTES` refused as soon as it is seen (by ``Content-Length`` or
while reading). Errors are :class:`~pia_mqtt.errors.TorrentUnavailableError` saying what
was being done and what to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from pia_mqtt import limits
from pia_mqtt.errors import TorrentUnavailableError
from pia_mqtt.redact import describe, redact

if TYPE_CHECKING:
    from collections.abc import Mapping

DEADLINE = 10.0
MAX_REPLY_BYTES = limits.MAX_REPLY_BYTES
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
    **kwargs: Any,
) -> Reply:
    """POST to ``target.url`` and read the whole reply within ``deadline`` seconds."""
    try:
        response = limits.fetch(
            session, "POST", target.url, deadline=deadline, allow_redirects=False, **kwargs
        )
    except limits.ReplyTooLarge:
        raise TorrentUnavailableError(
            f"{doing}: {target.where} sent a reply over {MAX_REPLY_BYTES // 1024} KiB; "
            f"{target.hint}"
        ) from None
    except requests.Timeout:
        raise TorrentUnavailableError(
            f"{doing}: {target.where} did not answer within {deadline:g} s; {target.hint}"
        ) from None
    except requests.RequestException as exc:
        raise TorrentUnavailableError(
            f"{doing}: {target.where} is not reachable ({_reason(exc)}); {target.hint}"
        ) from None
    return Reply(response.status_code, response.headers, response.content)


def _reason(exc: BaseException) -> str:
    """The OS-level reason (``Connection refused``) from requests' nested error text."""
    text = describe(exc)
    found = _ERRNO_RE.search(text)
    return found.group(1).strip() if found else text

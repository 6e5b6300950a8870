"""What qBittorrent's Web API sends back, and the errors its replies become.

Pure helpers for :mod:`pia_mqtt.torrent.qbittorrent`: the parts of the JSON replies the
client reads, the Web API version, and every error message (built from redacted text only,
each naming the variable to fix).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from pia_mqtt.errors import (
    QbittorrentApiKeyUnsupportedError,
    QbittorrentAuthError,
    QbittorrentBannedError,
    QbittorrentHostHeaderError,
    QbittorrentUnavailableError,
)
from pia_mqtt.redact import describe, redact

if TYPE_CHECKING:
    import requests

# The Web API version that added API keys (qBittorrent 5.2.0, PR #23212).
API_KEY_WEBAPI = (2, 14, 1)
# transfer/info's connection_status: not listening at all, listening but nobody came in
# since qBittorrent started, or a peer has come in (qBittorrent's transfercontroller.cpp).
CONNECTION_STATES = ("connected", "firewalled", "disconnected")
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_CREDENTIALS_HINT = "check QBITTORRENT_USER and QBITTORRENT_PASS"


class Preferences(BaseModel):
    """The part of ``app/preferences`` this client uses."""

    model_config = ConfigDict(extra="ignore")

    listen_port: int
    random_port: bool = False


class TransferInfo(BaseModel):
    """The part of ``transfer/info`` this client uses."""

    model_config = ConfigDict(extra="ignore")

    connection_status: str


def webapi_version(host: str, reply: requests.Response) -> tuple[int, ...]:
    """Parse ``app/webapiVersion`` (``2.8.19``) into a comparable tuple."""
    text = reply.text.strip()
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise QbittorrentUnavailableError(
            f"qBittorrent at {host} sent a Web API version that is not a version "
            f"({redact(text[:40])!r}); check QBITTORRENT_HOST points at qBittorrent's Web UI"
        ) from None


def no_password(host: str) -> QbittorrentAuthError:
    """A login is asked for and there is no password to give."""
    return QbittorrentAuthError(
        f"qBittorrent at {host} asks for a login but QBITTORRENT_PASS is not "
        "set: set QBITTORRENT_PASS (and QBITTORRENT_USER), or allow this client in "
        "qBittorrent's 'Bypass authentication for clients on localhost/in whitelisted "
        "IP subnets'"
    )


def banned(host: str) -> QbittorrentBannedError:
    """A 403 to the login: qBittorrent banned this IP."""
    return QbittorrentBannedError(
        f"qBittorrent at {host} has banned this client's IP after too many failed "
        f"logins (403 on login) until its Web UI ban duration is over; meanwhile "
        f"{_CREDENTIALS_HINT}"
    )


def login_refused(host: str, username: str) -> QbittorrentAuthError:
    """Wrong user or password (401, or 4.x's ``200 Fails.``)."""
    return QbittorrentAuthError(
        f"qBittorrent at {host} refused the login for user "
        f"{redact(username)!r}: {_CREDENTIALS_HINT}"
    )


def key_refused(host: str, doing: str) -> QbittorrentAuthError:
    """A 403 to a request carrying the API key."""
    return QbittorrentAuthError(
        f"{doing}: qBittorrent at {host} refused QBITTORRENT_API_KEY (403): check the "
        "key (qBittorrent: Options, Web UI, API key) and that qBittorrent is 5.2 or newer "
        "(older versions know no API keys: use QBITTORRENT_USER/QBITTORRENT_PASS)"
    )


def key_unsupported(host: str, version: tuple[int, ...]) -> QbittorrentApiKeyUnsupportedError:
    """An API key configured for a qBittorrent that would ignore it."""
    return QbittorrentApiKeyUnsupportedError(
        f"qBittorrent at {host} has Web API {'.'.join(map(str, version))} (older than "
        "qBittorrent 5.2), which ignores API keys: it answered only because its "
        "localhost/subnet authentication bypass lets every request in, so QBITTORRENT_API_KEY "
        "cannot be checked. Unset QBITTORRENT_API_KEY and set QBITTORRENT_USER/QBITTORRENT_PASS, "
        "or upgrade qBittorrent to 5.2 or newer"
    )


def host_header_error(host: str, doing: str) -> QbittorrentHostHeaderError:
    """A 401 outside a login: qBittorrent's Host-header (or CSRF) check refused us."""
    return QbittorrentHostHeaderError(
        f"{doing}: qBittorrent at {host} answered 401 Unauthorized, which its Web UI "
        "sends when the Host header (or Referer) does not match its own address and port. "
        "Set QBITTORRENT_HOST to qBittorrent's real Web UI host and port (behind a Docker "
        "port mapping use the container's port, e.g. http://qbittorrent:8080, not the "
        "published one)"
    )


def unexpected(host: str, reply: requests.Response, doing: str) -> QbittorrentUnavailableError:
    """Any other status: something that is not qBittorrent's Web UI, or a broken one."""
    snippet = redact(reply.text.strip()[:80]) or "no body"
    return QbittorrentUnavailableError(
        f"{doing}: qBittorrent at {host} answered HTTP {reply.status_code} "
        f"({snippet}); check QBITTORRENT_HOST points at qBittorrent's Web UI"
    )


def reason(exc: BaseException) -> str:
    """Return the OS-level reason (``Connection refused``) from requests' nested error."""
    text = describe(exc)
    found = _ERRNO_RE.search(text)
    return found.group(1).strip() if found else text

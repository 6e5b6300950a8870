"""qBittorrent's Web API: log in, read and set the listening port.

Works with 4.x (login ``200 Ok.``/``200 Fails.``, cookie ``SID``) and 5.2+ (login
``204``/``401``, cookie ``QBT_SID_<port>``): the session is a cookie jar and no cookie is
ever looked up by name. No ``Referer``/``Origin`` headers are sent (qBittorrent's CSRF
check passes requests without them). A request that gets 403 logs in and is retried once;
the login call itself is never retried. With ``password=None`` the client never logs in
and relies on qBittorrent's localhost/subnet authentication bypass.

Every call has a timeout. Errors are translated here into :mod:`pia_mqtt.errors`, with
messages built from redacted text only.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import (
    QbittorrentAuthError,
    QbittorrentBannedError,
    QbittorrentHostHeaderError,
    QbittorrentUnavailableError,
)
from pia_mqtt.redact import describe, redact, register

log = logging.getLogger(__name__)

_CREDENTIALS_HINT = "check QBITTORRENT_USER and QBITTORRENT_PASS"
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class _Preferences(BaseModel):
    """The part of ``app/preferences`` this client uses."""

    model_config = ConfigDict(extra="ignore")

    listen_port: int
    random_port: bool = False


class QbittorrentClient:
    """A small client for the endpoints a port sync needs; not thread-safe (one worker).

    Implements :class:`pia_mqtt.torrent.sink.TorrentClient`.
    """

    name = "qbittorrent"
    label = "qBittorrent"
    credentials = "QBITTORRENT_USER/QBITTORRENT_PASS"

    def __init__(
        self, host: str, *, username: str, password: str | None, timeout: float = 5.0
    ) -> None:
        self._host = host.rstrip("/")
        self._api = f"{self._host}/api/v2/"
        self._username = username
        self._password = password
        register(password)
        self._timeout = timeout
        self._session = requests.Session()
        # No proxies or .netrc from the environment: qBittorrent is a local peer, and a
        # netrc Authorization header or a proxy would only confuse its auth checks.
        self._session.trust_env = False
        self.logins = 0
        """Login requests sent (for tests and diagnostics)."""
        self.failed_logins = 0
        """Logins refused for wrong credentials since the last successful one."""

    @property
    def host(self) -> str:
        """The Web UI base URL this client talks to (redacted for messages)."""
        return redact(self._host)

    def login(self) -> None:
        """Log in with the configured user and password (one request, never retried).

        Raises QbittorrentAuthError (wrong credentials or no password configured),
        QbittorrentBannedError (403: qBittorrent banned this IP),
        QbittorrentHostHeaderError or QbittorrentUnavailableError.
        """
        if self._password is None:
            raise QbittorrentAuthError(
                f"qBittorrent at {self.host} asks for a login but QBITTORRENT_PASS is not "
                "set: set QBITTORRENT_PASS (and QBITTORRENT_USER), or allow this client in "
                "qBittorrent's 'Bypass authentication for clients on localhost/in whitelisted "
                "IP subnets'"
            )
        self.logins += 1
        reply = self._send(
            "POST",
            "auth/login",
            "logging in",
            data={"username": self._username, "password": self._password},
        )
        body = reply.text.strip()
        if reply.status_code == 204 or (reply.status_code == 200 and body == "Ok."):
            self.failed_logins = 0
            log.debug("logged in to qBittorrent at %s", self.host)
            return
        if reply.status_code == 403:
            raise QbittorrentBannedError(
                f"qBittorrent at {self.host} has banned this client's IP after too many failed "
                f"logins (403 on login) until its Web UI ban duration is over; meanwhile "
                f"{_CREDENTIALS_HINT}"
            )
        if reply.status_code == 401 and self._host_header_rejected():
            raise self._host_header_error("logging in")
        if reply.status_code == 401 or (reply.status_code == 200 and body == "Fails."):
            self.failed_logins += 1
            raise QbittorrentAuthError(
                f"qBittorrent at {self.host} refused the login for user "
                f"{redact(self._username)!r}: {_CREDENTIALS_HINT}"
            )
        raise self._unexpected(reply, "logging in")

    def version(self) -> str:
        """Return qBittorrent's version text (``v4.5.2``)."""
        return self._call("GET", "app/version", "reading the version").text.strip()

    def listen_port(self) -> int:
        """Return the port qBittorrent is configured to listen on (``app/preferences``)."""
        return self._preferences("reading the listening port").listen_port

    def set_listen_port(self, port: int) -> int:
        """Set ``listen_port`` (and ``random_port`` false), read it back and return it.

        Ports outside 1-65535 are refused with ValueError before anything is sent
        (qBittorrent would store 70000, and 0 means "pick a random port"). Raises
        QbittorrentUnavailableError when the read-back preferences do not show the port.
        """
        if not valid_port(port):
            raise ValueError(f"refusing to set qBittorrent's listen port to {port!r}")
        doing = f"setting the listening port to {port}"
        payload = json.dumps({"listen_port": port, "random_port": False})
        self._call("POST", "app/setPreferences", doing, data={"json": payload})
        prefs = self._preferences(f"reading back the listening port after {doing}")
        if prefs.listen_port != port or prefs.random_port:
            raise QbittorrentUnavailableError(
                f"qBittorrent at {self.host} accepted listen port {port} but reports "
                f"{prefs.listen_port} (random_port={prefs.random_port}); is another tool or "
                "a --torrenting-port option changing it?"
            )
        log.debug("qBittorrent at %s confirmed listen port %s", self.host, port)
        return prefs.listen_port

    def reapply_listen_port(self, port: int) -> int:
        """Make qBittorrent open its listening socket again on the same ``port``.

        Setting an unchanged port is a no-op in qBittorrent, and after its interface went
        down and up it may have no socket at all (qBittorrent #21288). Setting another port
        and then ``port`` again makes it rebind: the workaround gluetun's wiki gives.
        """
        self.set_listen_port(port + 1 if port < 65535 else port - 1)
        return self.set_listen_port(port)

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def _preferences(self, doing: str) -> _Preferences:
        reply = self._call("GET", "app/preferences", doing)
        try:
            return _Preferences.model_validate_json(reply.content)
        except ValidationError as exc:
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} sent preferences without a usable "
                f"listen_port ({exc.error_count()} problem(s)); check QBITTORRENT_HOST"
            ) from None

    def _call(self, method: str, path: str, doing: str, **kwargs: Any) -> requests.Response:
        """Send; on 403 log in (if a password is set) and retry once."""
        reply = self._send(method, path, doing, **kwargs)
        if reply.status_code == 403:
            log.debug("qBittorrent answered 403 to %s; logging in", doing)
            self.login()
            reply = self._send(method, path, doing, **kwargs)
            if reply.status_code == 403:
                raise QbittorrentUnavailableError(
                    f"{doing}: qBittorrent at {self.host} still answers 403 right after a "
                    "successful login; check its Web UI settings (IP whitelist, reverse proxy)"
                )
        if reply.status_code == 401:
            raise self._host_header_error(doing)
        if reply.status_code not in (200, 204):
            raise self._unexpected(reply, doing)
        return reply

    def _send(self, method: str, path: str, doing: str, **kwargs: Any) -> requests.Response:
        try:
            reply = self._session.request(
                method, self._api + path, timeout=self._timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} did not answer within {self._timeout:g} s; "
                "check QBITTORRENT_HOST and that qBittorrent is running"
            ) from None
        except requests.RequestException as exc:
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} is not reachable ({_reason(exc)}); "
                "check QBITTORRENT_HOST and that qBittorrent is running"
            ) from None
        if reply.status_code >= 500:
            raise self._unexpected(reply, doing)
        return reply

    def _host_header_rejected(self) -> bool:
        """Tell whether qBittorrent rejects our Host header (after a 401 on login).

        Without a session a request with an accepted Host header gets 403 (or 200 under
        the auth bypass); Host-header and CSRF validation answer 401 before auth is looked
        at. The probe is not a login, so it does not count toward qBittorrent's ban.
        """
        try:
            return self._send("GET", "app/version", "probing").status_code == 401
        except QbittorrentUnavailableError:
            return False

    def _host_header_error(self, doing: str) -> QbittorrentHostHeaderError:
        return QbittorrentHostHeaderError(
            f"{doing}: qBittorrent at {self.host} answered 401 Unauthorized, which its Web UI "
            "sends when the Host header (or Referer) does not match its own address and port. "
            "Set QBITTORRENT_HOST to qBittorrent's real Web UI host and port (behind a Docker "
            "port mapping use the container's port, e.g. http://qbittorrent:8080, not the "
            "published one)"
        )

    def _unexpected(self, reply: requests.Response, doing: str) -> QbittorrentUnavailableError:
        snippet = redact(reply.text.strip()[:80]) or "no body"
        return QbittorrentUnavailableError(
            f"{doing}: qBittorrent at {self.host} answered HTTP {reply.status_code} "
            f"({snippet}); check QBITTORRENT_HOST points at qBittorrent's Web UI"
        )


def _reason(exc: BaseException) -> str:
    """Return the OS-level reason (``Connection refused``) from requests' nested error."""
    text = describe(exc)
    found = _ERRNO_RE.search(text)
    return found.group(1).strip() if found else text

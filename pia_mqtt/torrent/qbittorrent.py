"""qBittorrent's Web API: log in, read and set the listening port, read connectability.

Works with 4.x (login ``200 Ok.``/``200 Fails.``, cookie ``SID``) and 5.2+ (login
``204``/``401``, cookie ``QBT_SID_<port>``): the session is a cookie jar and no cookie is
ever looked up by name. No ``Referer``/``Origin`` headers are sent (qBittorrent's CSRF
check passes requests without them). A request that gets 403 logs in and is retried once;
the login call itself is never retried. With ``password=None`` the client never logs in
and relies on qBittorrent's localhost/subnet authentication bypass.

With an API key (qBittorrent 5.2+, Web API 2.14.1) every request carries
``Authorization: Bearer <key>`` and nothing logs in. qBittorrent answers a wrong key with
403 without counting it toward its login ban (webapplication.cpp: a Bearer request never
reaches the credential check). Older versions ignore the header, and under their
localhost/subnet bypass every request would then look authorised, so the Web API version is
read first and a key is refused on a version that cannot check it.

Every call has one overall deadline and a 64 KiB reply cap (:mod:`pia_mqtt.limits`). Errors
are translated here into :mod:`pia_mqtt.errors`, with messages built from redacted text only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from pydantic import ValidationError

from pia_mqtt import limits
from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import QbittorrentUnavailableError
from pia_mqtt.redact import redact, register
from pia_mqtt.torrent import qbittorrent_replies as replies

log = logging.getLogger(__name__)


class QbittorrentClient:
    """A small client for the endpoints a port sync needs; not thread-safe (one worker).

    Implements :class:`pia_mqtt.torrent.sink.TorrentClient`.
    """

    name = "qbittorrent"
    label = "qBittorrent"

    def __init__(
        self,
        host: str,
        *,
        username: str,
        password: str | None,
        api_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._host = host.rstrip("/")
        self._api = f"{self._host}/api/v2/"
        self._username = username
        self._password = password
        self._api_key = api_key
        register(password, api_key)
        self._timeout = timeout  # one deadline per whole request (pia_mqtt.limits)
        # No proxies or .netrc from the environment: qBittorrent is a local peer, and a
        # netrc Authorization header or a proxy would only confuse its auth checks.
        self._session = limits.session(trust_env=False)
        if api_key is not None:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._key_checked = False
        self.credentials = (
            "QBITTORRENT_API_KEY" if api_key is not None else "QBITTORRENT_USER/QBITTORRENT_PASS"
        )
        """The variables to fix when qBittorrent refuses us."""
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
        if self._api_key is not None:
            raise replies.key_refused(self.host, "logging in")
        if self._password is None:
            raise replies.no_password(self.host)
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
            raise replies.banned(self.host)
        if reply.status_code == 401 and self._host_header_rejected():
            raise replies.host_header_error(self.host, "logging in")
        if reply.status_code == 401 or (reply.status_code == 200 and body == "Fails."):
            self.failed_logins += 1
            raise replies.login_refused(self.host, self._username)
        raise replies.unexpected(self.host, reply, "logging in")

    def version(self) -> str:
        """Return qBittorrent's version text (``v4.5.2``)."""
        return self._call("GET", "app/version", "reading the version").text.strip()

    def webapi_version(self) -> tuple[int, ...]:
        """Return qBittorrent's Web API version (``(2, 8, 19)`` on 4.5.2)."""
        return replies.webapi_version(
            self.host, self._call("GET", "app/webapiVersion", "reading the version")
        )

    def connection_status(self) -> str | None:
        """Return ``transfer/info``'s ``connection_status`` (``firewalled`` ...), None if odd.

        ``connected``: an incoming connection has arrived since qBittorrent started;
        ``firewalled``: none yet (normal right after a port change until a peer connects);
        ``disconnected``: no listening socket at all.
        """
        reply = self._call("GET", "transfer/info", "reading the connection status")
        try:
            status = replies.TransferInfo.model_validate_json(reply.content).connection_status
        except ValidationError:
            status = None
        if status not in replies.CONNECTION_STATES:
            log.debug("qBittorrent at %s sent an unknown connection status", self.host)
            return None
        return status

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

        Setting a port to its current value does nothing. qBittorrent 4.5.2 (libtorrent
        1.2) keeps a socket tied to the vanished interface after a VPN interface is
        recreated, so peers get "connection refused" until the port changes: it is set to
        a neighbour and back (5.3 with libtorrent 2.0 reopens on its own; the detour does
        it no harm). Returns the port read back; a failure half-way leaves the neighbour
        set, which the next check repairs as drift.
        """
        if not valid_port(port):
            raise ValueError(f"refusing to set qBittorrent's listen port to {port!r}")
        away = port + 1 if port < 65535 else port - 1
        payload = json.dumps({"listen_port": away, "random_port": False})
        doing = f"re-applying listen port {port} (moving it to {away} first)"
        self._call("POST", "app/setPreferences", doing, data={"json": payload})
        return self.set_listen_port(port)

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def _preferences(self, doing: str) -> replies.Preferences:
        reply = self._call("GET", "app/preferences", doing)
        try:
            return replies.Preferences.model_validate_json(reply.content)
        except ValidationError as exc:
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} sent preferences without a usable "
                f"listen_port ({exc.error_count()} problem(s)); check QBITTORRENT_HOST"
            ) from None

    def _call(self, method: str, path: str, doing: str, **kwargs: Any) -> requests.Response:
        """Send; on 403 log in (if a password is set) and retry once."""
        if self._api_key is not None:
            return self._call_with_key(method, path, doing, **kwargs)
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
            raise replies.host_header_error(self.host, doing)
        if reply.status_code not in (200, 204):
            raise replies.unexpected(self.host, reply, doing)
        return reply

    def _call_with_key(
        self, method: str, path: str, doing: str, **kwargs: Any
    ) -> requests.Response:
        """Send with the API key (never logs in); the Web API version is checked first."""
        if not self._key_checked:
            version = replies.webapi_version(
                self.host,
                self._checked(
                    self._send("GET", "app/webapiVersion", "checking API key support"),
                    "checking API key support",
                ),
            )
            if version < replies.API_KEY_WEBAPI:
                raise replies.key_unsupported(self.host, version)
            self._key_checked = True
        return self._checked(self._send(method, path, doing, **kwargs), doing)

    def _checked(self, reply: requests.Response, doing: str) -> requests.Response:
        """Translate the status of a reply to an API-key request."""
        if reply.status_code == 403:
            raise replies.key_refused(self.host, doing)
        if reply.status_code == 401:
            raise replies.host_header_error(self.host, doing)
        if reply.status_code not in (200, 204):
            raise replies.unexpected(self.host, reply, doing)
        return reply

    def _send(self, method: str, path: str, doing: str, **kwargs: Any) -> requests.Response:
        try:
            reply = limits.fetch(
                self._session,
                method,
                self._api + path,
                deadline=self._timeout,
                allow_redirects=False,
                **kwargs,
            )
        except limits.ReplyTooLarge as exc:
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} sent an oversized reply ({exc}); check "
                "QBITTORRENT_HOST points at qBittorrent's Web UI"
            ) from None
        except requests.Timeout:
            self._key_checked = False  # it may come back as another version
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} did not answer within {self._timeout:g} s; "
                "check QBITTORRENT_HOST and that qBittorrent is running"
            ) from None
        except requests.RequestException as exc:
            self._key_checked = False
            raise QbittorrentUnavailableError(
                f"{doing}: qBittorrent at {self.host} is not reachable ({replies.reason(exc)}); "
                "check QBITTORRENT_HOST and that qBittorrent is running"
            ) from None
        if reply.status_code >= 500:
            raise replies.unexpected(self.host, reply, doing)
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

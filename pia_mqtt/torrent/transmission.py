"""Transmission's RPC: read and set the peer port, on 2.x/3.x/4.0 and on 4.1's JSON-RPC 2.0.

Every request carries HTTP Basic auth when a user or password is configured (Transmission
3.00 counts a request without it as a failed login) and ``X-Transmission-Session-Id``. The
first request of a session gets 409 with the id; a later 409 means Transmission restarted
or rotated it: take the new id and resend, once. The protocol is picked from that 409: 4.1
(``X-Transmission-Rpc-Version`` 6.0.0 and up) speaks JSON-RPC 2.0 with snake_case names
(``session_set``, ``peer_port``); older ones the legacy ``session-set``/``peer-port``
protocol (4.1 still takes it, deprecated). A ``session-get`` that reports ``rpc-version`` 18+
switches to JSON-RPC too.

Refusals are explained: 401 wrong credentials (counted, the sink latches), 403 "not
whitelisted" (``rpc-whitelist``) or the brute-force lock (100 failures lock RPC for everyone
until Transmission restarts), 421 an unrecognised Host header (``rpc-host-whitelist``).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import HTTPBasicAuth

from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import TorrentAuthError, TorrentBannedError, TorrentUnavailableError
from pia_mqtt.redact import redact, register
from pia_mqtt.torrent.http import DEADLINE, Reply, Target, post

log = logging.getLogger(__name__)

SESSION_HEADER = "X-Transmission-Session-Id"
VERSION_HEADER = "X-Transmission-Rpc-Version"
_CREDENTIALS = "TRANSMISSION_USER/TRANSMISSION_PASS"
_HINT = "check TRANSMISSION_URL and that Transmission is running"
# 4.1.0 is rpc-version 18 / rpc_version_semver 6.0.0: JSON-RPC 2.0 from there on.
_JSONRPC_MAJOR = 6
_JSONRPC_RPC_VERSION = 18


def rpc_url(url: str) -> str:
    """TRANSMISSION_URL with Transmission's default path filled in when it has none."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/transmission/rpc"
    return url


class TransmissionClient:
    """Reads and sets Transmission's peer port; not thread-safe (the sink's worker only).

    Implements :class:`pia_mqtt.torrent.sink.TorrentClient`.
    """

    name = "transmission"
    label = "Transmission"
    credentials = _CREDENTIALS

    def __init__(
        self,
        url: str,
        *,
        username: str | None,
        password: str | None,
        deadline: float = DEADLINE,
    ) -> None:
        self._target = Target("Transmission", rpc_url(url), _HINT)
        register(password)
        self._session = requests.Session()
        # A proxy or a .netrc from the environment would only confuse Transmission's checks.
        self._session.trust_env = False
        if username is not None or password is not None:
            # UTF-8, as Transmission stores it (requests would send a str as Latin-1).
            self._session.auth = HTTPBasicAuth(
                (username or "").encode("utf-8"), (password or "").encode("utf-8")
            )
        self._has_credentials = username is not None or password is not None
        self._deadline = deadline
        self._session_id: str | None = None
        self._ids = itertools.count(1)
        self.jsonrpc: bool | None = None
        """True for JSON-RPC 2.0 (4.1+), False for the legacy protocol, None until known."""
        self.failed_logins = 0
        """Requests refused for wrong credentials since the last accepted one."""

    def listen_port(self) -> int:
        """Return the peer port Transmission is set to (``session-get``)."""
        doing = "reading the peer port"
        result = self._call("session-get", {"fields": ["peer-port", "rpc-version"]}, doing)
        return self._port(result, doing)

    def set_listen_port(self, port: int) -> int:
        """Set ``peer-port`` (and ``peer-port-random-on-start`` false), read it back, return it.

        Ports outside 1-65535 are refused with ValueError before anything is sent
        (Transmission 4.1 stores 70000 as 4464).
        """
        if not valid_port(port):
            raise ValueError(f"refusing to set Transmission's peer port to {port!r}")
        doing = f"setting the peer port to {port}"
        self._call("session-set", {"peer-port": port, "peer-port-random-on-start": False}, doing)
        result = self._call("session-get", {"fields": ["peer-port", "rpc-version"]}, doing)
        confirmed = self._port(result, f"reading back the peer port after {doing}")
        if confirmed != port:
            raise TorrentUnavailableError(
                f"{self._target.where} accepted peer port {port} but reports {confirmed}; is "
                "another tool (or the container's PEERPORT setting) changing it?"
            )
        log.debug("%s confirmed peer port %s", self._target.where, port)
        return confirmed

    def reapply_listen_port(self, port: int) -> int:
        """Open Transmission's peer socket again on the same ``port`` (after a tunnel change).

        Setting an unchanged peer port does nothing, so this sets a neighbour and then
        ``port`` again: Transmission closes its socket and binds a new one each time.
        """
        self.set_listen_port(port + 1 if port < 65535 else port - 1)
        return self.set_listen_port(port)

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def _port(self, result: dict[str, Any], doing: str) -> int:
        port = result.get("peer-port", result.get("peer_port"))
        version = result.get("rpc-version", result.get("rpc_version"))
        if self.jsonrpc is None and isinstance(version, int):
            self.jsonrpc = version >= _JSONRPC_RPC_VERSION
        if not isinstance(port, int) or isinstance(port, bool):
            raise TorrentUnavailableError(
                f"{doing}: {self._target.where} sent session settings without a peer port; {_HINT}"
            )
        return port

    def _call(self, method: str, arguments: dict[str, Any], doing: str) -> dict[str, Any]:
        """One RPC call in the session's protocol; 409 takes the new id and resends once."""
        reply = self._send(method, arguments, doing)
        if reply.status == 409:
            self._take_session(reply, doing)
            reply = self._send(method, arguments, doing)
            if reply.status == 409:
                raise TorrentUnavailableError(
                    f"{doing}: {self._target.where} answered 409 again right after giving a "
                    f"new session id; is a proxy dropping the {SESSION_HEADER} header?"
                )
        self._check_status(reply, doing)
        self.failed_logins = 0
        return self._result(reply, doing)

    def _send(self, method: str, arguments: dict[str, Any], doing: str) -> Reply:
        if self.jsonrpc:
            body: dict[str, Any] = {
                "jsonrpc": "2.0",
                "method": method.replace("-", "_"),
                "params": _snake(arguments),
                "id": next(self._ids),
            }
        else:
            body = {"method": method, "arguments": arguments, "tag": next(self._ids)}
        headers = {SESSION_HEADER: self._session_id} if self._session_id else {}
        return post(
            self._session,
            self._target,
            doing,
            deadline=self._deadline,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", **headers},
        )

    def _take_session(self, reply: Reply, doing: str) -> None:
        session_id = reply.headers.get(SESSION_HEADER)
        if not session_id:
            raise TorrentUnavailableError(
                f"{doing}: {self._target.where} answered 409 without an {SESSION_HEADER} "
                "header; is TRANSMISSION_URL Transmission's RPC (…/transmission/rpc)?"
            )
        if self._session_id is not None:
            log.debug("Transmission's session id changed (it restarted?); resending")
        self._session_id = session_id
        version = reply.headers.get(VERSION_HEADER, "")
        major = version.split(".", 1)[0]
        jsonrpc = major.isdigit() and int(major) >= _JSONRPC_MAJOR
        if jsonrpc != self.jsonrpc:
            log.debug(
                "Transmission RPC %s: %s", version or "< 6", "JSON-RPC 2.0" if jsonrpc else "legacy"
            )
        self.jsonrpc = jsonrpc

    def _check_status(self, reply: Reply, doing: str) -> None:
        where = self._target.where
        if reply.status == 401:
            self.failed_logins += 1
            if not self._has_credentials:
                raise TorrentAuthError(
                    f"{doing}: {where} requires a login (401) but TRANSMISSION_USER and "
                    "TRANSMISSION_PASS are not set: set them to Transmission's rpc-username "
                    "and rpc-password"
                )
            raise TorrentAuthError(
                f"{doing}: {where} refused the user name or password (401): check "
                "TRANSMISSION_USER and TRANSMISSION_PASS against Transmission's rpc-username "
                "and rpc-password"
            )
        if reply.status == 403:
            if b"unsuccessful login" in reply.body.lower() or b"brute" in reply.body.lower():
                raise TorrentBannedError(
                    f"{doing}: {where} has locked its RPC after too many failed logins (403) "
                    f"until Transmission restarts; fix {_CREDENTIALS}, then restart it"
                )
            raise TorrentUnavailableError(
                f"{doing}: {where} refused this client's IP address (403, not whitelisted): "
                "add pia-mqtt's address to Transmission's rpc-whitelist (settings.json, "
                "while Transmission is stopped; wildcards like 172.16.*.* work) or set "
                "rpc-whitelist-enabled false. After many failed logins Transmission 4 also "
                f"answers 403 to everyone: then fix {_CREDENTIALS} and restart Transmission"
            )
        if reply.status == 421:
            raise TorrentUnavailableError(
                f"{doing}: {where} does not accept the host name in TRANSMISSION_URL (421, "
                "its DNS-rebinding check): use Transmission's IP address in TRANSMISSION_URL, "
                "add the name to rpc-host-whitelist, or turn on RPC authentication "
                "(rpc-authentication-required) and set TRANSMISSION_USER/TRANSMISSION_PASS"
            )
        if reply.status not in (200, 204):
            raise TorrentUnavailableError(
                f"{doing}: {where} answered HTTP {reply.status} ({reply.text()}); "
                "check TRANSMISSION_URL points at Transmission's RPC (…/transmission/rpc)"
            )

    def _result(self, reply: Reply, doing: str) -> dict[str, Any]:
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TorrentUnavailableError(
                f"{doing}: {self._target.where} sent something that is not an RPC reply "
                f"({reply.text()}); check TRANSMISSION_URL"
            )
        if "jsonrpc" in data:
            if isinstance(data.get("error"), dict):
                error = data["error"]
                detail = (error.get("data") or {}).get("error_string") or error.get("message")
                raise TorrentUnavailableError(
                    f"{doing}: {self._target.where} answered error {error.get('code')} "
                    f"({redact(detail)})"
                )
            result = data.get("result")
        else:
            if data.get("result") != "success":
                raise TorrentUnavailableError(
                    f"{doing}: {self._target.where} answered {redact(data.get('result'))!r}"
                )
            result = data.get("arguments")
        return result if isinstance(result, dict) else {}


def _snake(arguments: dict[str, Any]) -> dict[str, Any]:
    """Legacy kebab-case names (and field lists) as 4.1's snake_case."""
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        fields = key == "fields" and isinstance(value, list)
        out[key.replace("-", "_")] = [str(f).replace("-", "_") for f in value] if fields else value
    return out

"""Deluge's Web UI JSON-RPC (``/json``): read and set the incoming port, on 2.0 and 2.2.

The Web UI, not the daemon: ``auth.login(password)`` sets a ``_session_id`` cookie (kept in
the session's cookie jar), and every ``core.*`` call is relayed to the daemon the Web UI is
connected to. The Web UI connects only at its own start (with a default daemon set) and
never again after that daemon restarts, so before each sync ``web.connected`` is asked and,
when false, the hosts of its Connection Manager (``web.get_hosts``) are tried in order with
``web.connect``. Error code 1 means the session expired (log in again, once); code 2 ("Unknown
method") on a ``core.*`` call means the Web UI has no daemon. Request ids are unique per
client, starting at a random number.

Talking to ``deluged`` directly (port 58846) would need TLS + rencode and a user from the
daemon's own ``auth`` file; every Deluge image people run with a VPN ships the Web UI, so
pia-mqtt uses the Web UI only (README: "Deluge").
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from typing import Any

import requests

from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import TorrentAuthError, TorrentUnavailableError
from pia_mqtt.redact import redact, register
from pia_mqtt.torrent.http import DEADLINE, Target, post

log = logging.getLogger(__name__)

_HINT = "check DELUGE_URL (the Web UI's …/json) and that deluge-web is running"
NOT_AUTHENTICATED = 1
UNKNOWN_METHOD = 2


def json_url(url: str) -> str:
    """DELUGE_URL with the Web UI's ``/json`` path filled in when it has none."""
    trimmed = url.rstrip("/")
    return trimmed if trimmed.endswith("/json") else trimmed + "/json"


class _RpcError(Exception):
    """A JSON-RPC error object from deluge-web (translated by the callers)."""

    def __init__(self, code: object, message: str) -> None:
        self.code = code
        super().__init__(message)


class DelugeClient:
    """Reads and sets Deluge's listen port through its Web UI; not thread-safe (one worker).

    Implements :class:`pia_mqtt.torrent.sink.TorrentClient`.
    """

    name = "deluge"
    label = "Deluge"
    credentials = "DELUGE_PASS"

    def __init__(self, url: str, *, password: str, deadline: float = DEADLINE) -> None:
        self._target = Target("Deluge's Web UI", json_url(url), _HINT)
        self._password = password
        register(password)
        self._session = requests.Session()
        self._session.trust_env = False
        self._deadline = deadline
        self._ids = itertools.count(secrets.randbelow(1 << 30) + 1)
        self._logged_in = False
        self.failed_logins = 0
        """Logins refused for a wrong DELUGE_PASS since the last successful one."""

    def listen_port(self) -> int:
        """Return the port Deluge's daemon listens on (``core.get_listen_port``)."""
        return self._port(self._core("core.get_listen_port", [], "reading the listen port"))

    def set_listen_port(self, port: int) -> int:
        """Set ``listen_ports`` to ``[port, port]`` (``random_port`` false), read back, return.

        Ports outside 1-65535 are refused with ValueError before anything is sent.
        """
        if not valid_port(port):
            raise ValueError(f"refusing to set Deluge's listen port to {port!r}")
        doing = f"setting the listen port to {port}"
        config = {"random_port": False, "listen_ports": [port, port]}
        self._core("core.set_config", [config], doing)
        confirmed = self._port(self._core("core.get_listen_port", [], doing))
        if confirmed != port:
            raise TorrentUnavailableError(
                f"{self._target.where} accepted listen port {port} but its daemon listens on "
                f"{confirmed}; is the port taken on the daemon's interface (Deluge then "
                "quietly takes the next one) or is another tool changing it?"
            )
        log.debug("Deluge confirmed listen port %s", port)
        return confirmed

    def reapply_listen_port(self, port: int) -> int:
        """Make libtorrent open its listen socket again on the same ``port`` (tunnel change).

        An unchanged ``listen_ports`` is not applied again, so this sets a neighbour and then
        ``port`` again, as for qBittorrent.
        """
        self.set_listen_port(port + 1 if port < 65535 else port - 1)
        return self.set_listen_port(port)

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._session.close()

    def _port(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TorrentUnavailableError(
                f"{self._target.where} sent {redact(value)!r} as the daemon's listen port; {_HINT}"
            )
        return value

    def _core(self, method: str, params: list[Any], doing: str) -> Any:
        """Call a daemon method: log in and connect the Web UI first when needed."""
        for attempt in (1, 2):
            if not self._logged_in:
                self._login(doing)
            try:
                self._ensure_connected(doing)
                return self._rpc(method, params, doing)
            except _RpcError as exc:
                if exc.code == NOT_AUTHENTICATED and attempt == 1:
                    log.debug("Deluge's Web UI session expired; logging in again")
                    self._logged_in = False
                    continue
                if exc.code == UNKNOWN_METHOD and attempt == 1:
                    continue  # the daemon went away between web.connected and the call
                raise self._rpc_failed(exc, doing) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _login(self, doing: str) -> None:
        try:
            accepted = self._rpc("auth.login", [self._password], f"{doing}: logging in")
        except _RpcError as exc:
            raise self._rpc_failed(exc, f"{doing}: logging in") from None
        if accepted is not True and not isinstance(accepted, str):
            self.failed_logins += 1
            raise TorrentAuthError(
                f"{doing}: {self._target.where} refused the password: check DELUGE_PASS "
                "(the Web UI's password, not a daemon user's)"
            )
        self.failed_logins = 0
        self._logged_in = True

    def _ensure_connected(self, doing: str) -> None:
        if self._rpc("web.connected", [], doing) is True:
            return
        hosts = self._rpc("web.get_hosts", [], doing)
        tried: list[str] = []
        for host in hosts if isinstance(hosts, list) else []:
            if not isinstance(host, list) or not host or not isinstance(host[0], str):
                continue
            tried.append(":".join(str(part) for part in host[1:3]))
            log.info("Deluge's Web UI is not connected to a daemon; connecting it to %s", tried[-1])
            self._rpc("web.connect", [host[0]], doing)
            if self._rpc("web.connected", [], doing) is True:
                return
        where = f" (tried {', '.join(tried)})" if tried else " (its Connection Manager is empty)"
        raise TorrentUnavailableError(
            f"{doing}: {self._target.where} is not connected to a Deluge daemon and could not "
            f"connect to one{where}: start deluged, and add it in the Web UI's Connection "
            "Manager (or set a default daemon there)"
        )

    def _rpc(self, method: str, params: list[Any], doing: str) -> Any:
        body = {"method": method, "params": params, "id": next(self._ids)}
        reply = post(
            self._session,
            self._target,
            doing,
            deadline=self._deadline,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if reply.status != 200:
            raise TorrentUnavailableError(
                f"{doing}: {self._target.where} answered HTTP {reply.status} ({reply.text()}); "
                f"{_HINT}"
            )
        try:
            data = json.loads(reply.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "result" not in data:
            raise TorrentUnavailableError(
                f"{doing}: {self._target.where} sent something that is not a JSON-RPC reply "
                f"({reply.text()}); {_HINT}"
            )
        error = data.get("error")
        if isinstance(error, dict):
            raise _RpcError(error.get("code"), redact(error.get("message")))
        return data["result"]

    def _rpc_failed(self, exc: _RpcError, doing: str) -> TorrentUnavailableError:
        where = self._target.where
        if exc.code == UNKNOWN_METHOD:
            return TorrentUnavailableError(
                f"{doing}: {where} answered 'Unknown method' (code 2): the Web UI is not "
                "connected to a Deluge daemon; start deluged and connect it in the Web UI's "
                "Connection Manager"
            )
        if exc.code == NOT_AUTHENTICATED:
            return TorrentUnavailableError(
                f"{doing}: {where} answered 'Not authenticated' right after a login; is a "
                "proxy dropping the _session_id cookie?"
            )
        return TorrentUnavailableError(f"{doing}: {where} answered error {exc.code} ({exc})")

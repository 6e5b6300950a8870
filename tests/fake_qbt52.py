"""A small HTTP server on 127.0.0.1 that answers like qBittorrent 5.2's Web API.

The main paths run against real 4.5.2 and 5.3.0 (tests/fixtures/qbittorrent.py); this stays
for what a real server cannot be made to show on demand: a hung server, a setPreferences
that answers 204 and changes nothing, and proof that nothing at all was sent. 5.2 changed what a client sees: login answers 204 (success) or 401
(wrong password) instead of ``200 Ok.``/``200 Fails.``, the session cookie is named
``QBT_SID_<webui port>`` instead of ``SID``, and ``setPreferences`` answers 204. Like the
real thing, every endpoint but login answers 403 without a session, a banned IP gets 403
on login, and it stores a listen port of 70000 without complaint.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

MAX_FAILED_LOGINS = 5


@dataclass
class FakeState:
    """What the fake remembers; tests read and change it directly."""

    user: str
    password: str
    listen_port: int = 6881
    random_port: bool = False
    sessions: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)
    logins: int = 0
    failed_logins: int = 0
    ignore_changes: bool = False
    """Answer 204 to setPreferences but keep the old values (another tool, a bad build)."""
    hold: threading.Event | None = None
    """When set to an unset Event, every request waits on it (a hung qBittorrent)."""


class FakeQbittorrent52:
    """Start with ``with FakeQbittorrent52(user, password) as fake:``; ``fake.url`` is the host."""

    def __init__(self, user: str, password: str) -> None:
        self.state = FakeState(user=user, password=password)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL for QBITTORRENT_HOST."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def cookie_name(self) -> str:
        """5.2's session cookie name."""
        return f"QBT_SID_{self.port}"

    def expire_sessions(self) -> None:
        """Forget every session, as a restart does."""
        self.state.sessions.clear()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state.hold is not None:
            self.state.hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(fake: FakeQbittorrent52) -> type[BaseHTTPRequestHandler]:
    state = fake.state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Keep test output quiet."""

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path.removeprefix("/api/v2/")
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode()) if length else {}
            state.requests.append((method, path))
            if state.hold is not None:
                state.hold.wait(30)
            post_only = {"auth/login", "auth/logout", "app/setPreferences"}
            if path in post_only and method != "POST":
                self._send(405, b"Method Not Allowed")
            elif path == "auth/login":
                self._login(form)
            elif not self._has_session():
                self._send(403, b"Forbidden")
            elif path == "app/version":
                self._send(200, b"v5.2.0")
            elif path == "app/webapiVersion":
                self._send(200, b"2.15.1")
            elif path == "app/preferences":
                prefs = {
                    "listen_port": state.listen_port,
                    "random_port": state.random_port,
                    "upnp": False,
                }
                self._send(200, json.dumps(prefs).encode(), "application/json")
            elif path == "app/setPreferences":
                self._set_preferences(form)
            else:
                self._send(404, b"Not Found")

        def _login(self, form: dict[str, list[str]]) -> None:
            state.logins += 1
            if state.failed_logins >= MAX_FAILED_LOGINS:
                self._send(403, b"Your IP address has been banned")
                return
            user = form.get("username", [""])[0]
            password = form.get("password", [""])[0]
            if (user, password) != (state.user, state.password):
                state.failed_logins += 1
                self._send(401, b"")
                return
            state.failed_logins = 0
            sid = secrets.token_urlsafe(24)
            state.sessions.add(sid)
            cookie = f"{fake.cookie_name}={sid}; HttpOnly; SameSite=Strict; path=/"
            self._send(204, b"", headers={"Set-Cookie": cookie})

        def _set_preferences(self, form: dict[str, list[str]]) -> None:
            if "json" not in form:
                self._send(400, b"'json' is missing")
                return
            try:
                changes = json.loads(form["json"][0])
            except ValueError:
                self._send(204, b"")  # like the real one: malformed JSON changes nothing
                return
            if state.ignore_changes:
                self._send(204, b"")
                return
            if "listen_port" in changes:
                state.listen_port = int(changes["listen_port"])
            if "random_port" in changes:
                state.random_port = bool(changes["random_port"])
            self._send(204, b"")

        def _has_session(self) -> bool:
            cookies = SimpleCookie(self.headers.get("Cookie") or "")
            morsel = cookies.get(fake.cookie_name)
            return morsel is not None and morsel.value in state.sessions

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain; charset=UTF-8",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler

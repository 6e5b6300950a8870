"""Deluge's Web UI client against real deluged + deluge-web: connecting, sessions, refusals.

The sink contract (set, drift, latch, down at start) is in tests/test_torrent_peers.py.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from typing import TYPE_CHECKING, ClassVar

import pytest

from pia_mqtt.errors import TorrentAuthError, TorrentUnavailableError
from pia_mqtt.torrent.deluge import DelugeClient, json_url
from tests.fixtures.deluge import VERSIONS

if TYPE_CHECKING:
    from tests.fixtures.deluge import DelugeFactory, DelugePeer

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("version", VERSIONS)
def test_a_web_ui_without_a_daemon_is_connected_to_its_host_and_set(
    version: str, deluge_factory: DelugeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """No default daemon: web.get_hosts + web.connect, then the port is set and listened on."""
    caplog.set_level(logging.INFO, logger="pia_mqtt.torrent.deluge")
    peer = deluge_factory(version, web_connected=False)
    assert not peer.is_web_connected()
    client = DelugeClient(peer.url, password=peer.password)
    try:
        assert client.set_listen_port(47333) == 47333
    finally:
        client.close()
    assert peer.is_web_connected()
    assert 47333 in peer.ns.listening()
    assert peer.core("core.get_config_value", "random_port") is False
    assert ["Deluge's Web UI is not connected to a daemon; connecting it to 127.0.0.1:58846"] == [
        r.getMessage() for r in caplog.records
    ]


def test_no_daemon_to_connect_to_is_explained(deluge: DelugePeer) -> None:
    """deluged down: the error says the Web UI has no daemon and which host was tried."""
    deluge.daemon.stop()
    client = DelugeClient(deluge.url, password=deluge.password)
    try:
        with pytest.raises(TorrentUnavailableError, match="not connected to a Deluge daemon") as e:
            client.listen_port()
    finally:
        client.close()
    assert "127.0.0.1:58846" in str(e.value)
    assert "Connection Manager" in str(e.value)


def test_a_restarted_web_ui_means_one_new_login(deluge: DelugePeer) -> None:
    """deluge-web restarted (sessions gone): code 1, one new login, the call succeeds."""
    client = DelugeClient(deluge.url, password=deluge.password)
    try:
        assert client.listen_port() == 6881
        deluge.restart_web()
        assert client.listen_port() == 6881
        assert client.failed_logins == 0
    finally:
        client.close()


def test_wrong_password_is_an_auth_error_naming_the_variable(deluge: DelugePeer) -> None:
    """auth.login false: TorrentAuthError naming DELUGE_PASS, counted once, nothing else sent."""
    client = DelugeClient(deluge.url, password="wrong")
    try:
        with pytest.raises(TorrentAuthError, match="DELUGE_PASS"):
            client.listen_port()
    finally:
        client.close()
    assert client.failed_logins == 1


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_ports_outside_range_are_refused_before_any_request(port: int) -> None:
    """Nothing is sent for a port outside 1-65535."""
    client = DelugeClient("http://127.0.0.1:9/json", password="x")
    with pytest.raises(ValueError, match="refusing"):
        client.set_listen_port(port)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://deluge:8112", "http://deluge:8112/json"),
        ("http://deluge:8112/", "http://deluge:8112/json"),
        ("http://deluge:8112/json", "http://deluge:8112/json"),
        ("http://proxy/deluge/json/", "http://proxy/deluge/json"),
    ],
)
def test_a_url_without_json_gets_it(given: str, used: str) -> None:
    """DELUGE_URL may be given as the Web UI's address alone."""
    assert used == json_url(given)


class _NoDaemonMethods(http.server.BaseHTTPRequestHandler):
    """A Web UI that says it is connected but knows no core.* method (code 2).

    The real deluge-web shows this only for a moment after it connects to its daemon (its
    method list arrives later), too briefly to test against.
    """

    ids: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.ids.append(body["id"])
        if body["method"].startswith("core."):
            reply = {"result": None, "error": {"message": "Unknown method", "code": 2}}
        else:
            reply = {"result": True, "error": None}
        data = json.dumps({**reply, "id": body["id"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


def test_unknown_method_means_no_daemon_and_request_ids_are_unique() -> None:
    """Code 2 on core.* is explained as "not connected to a daemon"; no id is sent twice."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoDaemonMethods)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = DelugeClient(f"http://127.0.0.1:{server.server_address[1]}", password="x")
    try:
        with pytest.raises(TorrentUnavailableError, match="Unknown method") as caught:
            client.listen_port()
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert "not connected to a Deluge daemon" in str(caught.value)
    assert len(_NoDaemonMethods.ids) == len(set(_NoDaemonMethods.ids)) > 3

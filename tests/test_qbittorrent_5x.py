"""qBittorrent 5.x for real: API keys, the 5.x login, and the connection status.

API keys are tested on real 5.3.0 (a key made with ``app/rotateAPIKey``, as the Web UI's
"Generate" button does) and on real 4.5.2, which knows no keys. Tests that take the
``qbittorrent_version`` parameter run on both.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pia_mqtt.core.model import SyncState
from pia_mqtt.errors import QbittorrentApiKeyUnsupportedError, QbittorrentAuthError
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.sink import TorrentSink
from tests.fixtures.common import RecordingInbox, eventually
from tests.fixtures.qbittorrent import (
    MAX_FAILED_LOGINS,
    PASSWORD,
    USER,
    V4,
    V5,
    VERSIONS,
    QbittorrentFactory,
)
from tests.test_qbittorrent import FakeClock, other_port, run

WRONG_KEY = "qbt_notTheKeyNotTheKeyNotTheKey1"


@pytest.fixture(params=VERSIONS)
def qbittorrent_version(request: pytest.FixtureRequest) -> str:
    """Tests that ask for it run on 4.5.2 and 5.3.0; the others pin a version below."""
    version: str = request.param
    return version


@pytest.fixture
def qbittorrent_isolated() -> bool:
    """Each qBittorrent here runs in a namespace of its own: nothing it sends can leave."""
    return True


def only(version: str) -> pytest.MarkDecorator:
    """Run a test on one qBittorrent version only."""
    return pytest.mark.parametrize("qbittorrent_version", [version], indirect=True)


@only(V5)
def test_api_key_works_without_login_or_cookie(qbittorrent_factory: QbittorrentFactory):
    """5.3: with QBITTORRENT_API_KEY the port is set and read back; nothing logs in."""
    qbt = qbittorrent_factory()
    key = qbt.rotate_api_key()
    assert key.startswith("qbt_")
    wanted = other_port(qbt.listen_port)
    client = QbittorrentClient(qbt.url, username=USER, password=None, api_key=key)
    try:
        assert client.webapi_version() >= (2, 14, 1)
        assert client.set_listen_port(wanted) == wanted
        assert client.listen_port() == wanted
        assert client.logins == 0
        assert len(client._session.cookies) == 0  # a Bearer request gets no session cookie
    finally:
        client.close()
    assert qbt.preferences()["listen_port"] == wanted
    assert client.credentials == "QBITTORRENT_API_KEY"


@only(V5)
def test_wrong_api_key_is_403_and_never_counts_toward_the_ban(
    qbittorrent_factory: QbittorrentFactory, caplog: pytest.LogCaptureFixture
):
    """5.3: a wrong key is an auth error naming the variable, however often, and no ban."""
    caplog.set_level(logging.DEBUG)
    qbt = qbittorrent_factory(ban_seconds=600)
    qbt.rotate_api_key()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD, api_key=WRONG_KEY)
    try:
        for _ in range(2 * MAX_FAILED_LOGINS):
            with pytest.raises(QbittorrentAuthError, match="QBITTORRENT_API_KEY") as caught:
                client.listen_port()
            assert WRONG_KEY not in str(caught.value)
    finally:
        client.close()
    assert (client.logins, qbt.failed_logins(), qbt.banned()) == (0, 0, False)
    # Not banned: the right password still logs in (204) at once.
    reply = requests.post(
        f"{qbt.url}/api/v2/auth/login", data={"username": USER, "password": PASSWORD}, timeout=5
    )
    assert reply.status_code == 204
    assert [r for r in caplog.records if WRONG_KEY in r.getMessage()] == []


@only(V5)
def test_wrong_api_key_is_refused_even_under_the_localhost_bypass(
    qbittorrent_factory: QbittorrentFactory,
):
    """5.3 checks a Bearer key before its bypass: a wrong key is refused, not waved through."""
    qbt = qbittorrent_factory(localhost_auth=False)
    qbt.rotate_api_key()
    client = QbittorrentClient(qbt.url, username=USER, password=None, api_key=WRONG_KEY)
    try:
        with pytest.raises(QbittorrentAuthError, match="QBITTORRENT_API_KEY"):
            client.set_listen_port(other_port(qbt.listen_port))
    finally:
        client.close()
    assert qbt.preferences()["listen_port"] == qbt.listen_port


@only(V4)
def test_api_key_is_refused_on_4x_even_where_the_bypass_would_let_it_in(
    qbittorrent_factory: QbittorrentFactory,
):
    """4.5.2 ignores the header; under its bypass the key is refused before any change."""
    qbt = qbittorrent_factory(localhost_auth=False)
    client = QbittorrentClient(qbt.url, username=USER, password=None, api_key=WRONG_KEY)
    try:
        with pytest.raises(QbittorrentApiKeyUnsupportedError) as caught:
            client.set_listen_port(other_port(qbt.listen_port))
    finally:
        client.close()
    message = str(caught.value)
    assert "QBITTORRENT_API_KEY" in message
    assert "2.8.19" in message
    assert "QBITTORRENT_USER/QBITTORRENT_PASS" in message
    assert qbt.preferences()["listen_port"] == qbt.listen_port


@only(V4)
def test_api_key_on_4x_without_bypass_is_refused_without_a_login(
    qbittorrent_factory: QbittorrentFactory,
):
    """4.5.2 answers 403 to a Bearer request: an auth error naming the key, no login sent."""
    qbt = qbittorrent_factory()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD, api_key=WRONG_KEY)
    try:
        with pytest.raises(QbittorrentAuthError, match="QBITTORRENT_API_KEY"):
            client.listen_port()
    finally:
        client.close()
    assert (client.logins, qbt.failed_logins()) == (0, 0)


@only(V5)
def test_wrong_api_key_latches_in_the_sink_but_never_gives_up(
    qbittorrent_factory: QbittorrentFactory,
):
    """The sink reports auth_failed for a wrong key and retries after auth_retry (no ban)."""
    qbt = qbittorrent_factory()
    inbox = RecordingInbox()
    clock = FakeClock()
    client = QbittorrentClient(qbt.url, username=USER, password=None, api_key=WRONG_KEY)
    sink = TorrentSink(client, inbox, check_interval=1, clock=clock)
    wanted = other_port(qbt.listen_port)
    try:
        for _ in range(4):
            run(sink, "check", wanted)
            assert inbox.health.state == SyncState.AUTH_FAILED
            assert "QBITTORRENT_API_KEY" in (inbox.health.error or "")
            clock.advance(hours=1)
        assert "gave up" not in (inbox.health.error or "")
    finally:
        sink.close()


@only(V5)
def test_5x_login_is_204_with_a_port_named_cookie(qbittorrent_factory: QbittorrentFactory):
    """5.3: login answers 204 and sets QBT_SID_<webui port>; a wrong password is 401."""
    qbt = qbittorrent_factory()
    raw = requests.post(
        f"{qbt.url}/api/v2/auth/login", data={"username": USER, "password": PASSWORD}, timeout=5
    )
    assert (raw.status_code, raw.text) == (204, "")
    assert set(raw.cookies.keys()) == {f"QBT_SID_{qbt.webui_port}"}
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    try:
        client.login()
        assert set(client._session.cookies.keys()) == {f"QBT_SID_{qbt.webui_port}"}
        assert client.listen_port() == qbt.listen_port
    finally:
        client.close()
    wrong = QbittorrentClient(qbt.url, username=USER, password="wrong")
    try:
        with pytest.raises(QbittorrentAuthError, match="QBITTORRENT_USER"):
            wrong.login()
    finally:
        wrong.close()
    assert (wrong.failed_logins, qbt.failed_logins()) == (1, 1)


def test_connection_status_is_in_the_sink_health_and_state_json(
    qbittorrent_factory: QbittorrentFactory,
):
    """A fresh qBittorrent nobody connected to says firewalled; the state JSON carries it."""
    qbt = qbittorrent_factory()
    inbox = RecordingInbox()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock())
    try:
        # 5.3 says disconnected (no listening socket yet) for a moment after its start.
        assert eventually(lambda: client.connection_status() == "firewalled")
        run(sink, "check", qbt.listen_port)  # its own port: nothing to change
    finally:
        sink.close()
    entry = inbox.health.to_json()
    assert (entry["state"], entry["connection_status"]) == ("in_sync", "firewalled")


def test_connection_status_never_changes_the_port(qbittorrent_factory: QbittorrentFactory):
    """firewalled is information: checks keep the port and set nothing (no retry, no move)."""
    qbt = qbittorrent_factory()
    inbox = RecordingInbox()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock())
    try:
        assert eventually(lambda: client.connection_status() == "firewalled")
        for _ in range(3):
            run(sink, "check", qbt.listen_port)
    finally:
        sink.close()
    assert inbox.events == []
    assert qbt.preferences()["listen_port"] == qbt.listen_port
    assert dict(inbox.health.details) == {"connection_status": "firewalled"}


@only(V5)
def test_once_with_an_api_key_file_sets_the_port_on_53(
    pia_env: dict[str, str], qbittorrent_factory: QbittorrentFactory, tmp_path: Path
):
    """`pia-mqtt once` with QBITTORRENT_API_KEY_FILE only: port set, no login, status in file."""
    qbt = qbittorrent_factory()
    key_file = tmp_path / "qbt-key"
    key_file.write_text(qbt.rotate_api_key() + "\n", encoding="utf-8")
    # The test's own login (to make the key), once qBittorrent has logged it.
    logins_before = eventually(lambda: qbt.log_file.read_text().count("WebAPI login success"))
    env = {**pia_env, "QBITTORRENT_HOST": qbt.url, "QBITTORRENT_API_KEY_FILE": str(key_file)}
    result = subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "once"],
        env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    port = int(Path(env["PORT_FILE"]).read_text())
    entry = json.loads(Path(env["PORT_DATA_FILE"]).read_text())["qbittorrent"]
    assert (entry["state"], entry["port"]) == ("in_sync", port)
    assert entry["connection_status"] in ("firewalled", "disconnected")
    assert qbt.log_file.read_text().count("WebAPI login success") == logins_before
    assert qbt.preferences()["listen_port"] == port
    assert key_file.read_text().strip() not in result.stdout + result.stderr

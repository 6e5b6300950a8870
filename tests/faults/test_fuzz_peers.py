"""Fuzzing the peers' inputs with hypothesis (derandomized, bounded).

qBittorrent replies through QbittorrentClient and the TorrentSink's reports; MQTT
command payloads through a real broker into the MqttSink; environment values through
load_settings (only ConfigError may come out).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pia_mqtt import __version__
from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import Command, Snapshot, Status, valid_port
from pia_mqtt.errors import ConfigError, QbittorrentError
from pia_mqtt.mqtt.sink import MqttSink
from pia_mqtt.settings import Settings, load_settings
from pia_mqtt.sinks.portfiles import data_document
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.sink import TorrentSink
from tests.faults.conftest import FUZZ, NETWORK_FUZZ, json_scalars, json_values, ports
from tests.fixtures.common import RecordingInbox, eventually
from tests.fixtures.mosquitto import Broker, Recorder

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("isolated_secrets")]


# --- qBittorrent replies -----------------------------------------------------------------


class FakeQbt:
    """A Web API answering generated replies: (status, body) per endpoint."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0].removeprefix("/api/v2/")
                status, body = fake.answers.get(path, (404, b"Not Found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_qbt() -> Iterator[FakeQbt]:
    """A qBittorrent look-alike that answers whatever the example says."""
    fake = FakeQbt()
    yield fake
    fake.close()


preference_docs = (
    st.fixed_dictionaries(
        {}, optional={"listen_port": ports, "random_port": json_scalars, "other": json_values}
    )
    | json_values
)
qbt_bodies = (
    preference_docs.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=60)
    | st.sampled_from([b"Ok.", b"Fails.", b"", b"Forbidden"])
)
qbt_status = st.sampled_from([200, 200, 200, 204, 400, 401, 403, 404, 409, 500])


@NETWORK_FUZZ
@given(qbt_status, qbt_bodies, qbt_status, qbt_bodies, qbt_status)
def test_qbittorrent_replies_give_a_valid_port_or_a_qbittorrent_error(
    fake_qbt: FakeQbt,
    prefs_status: int,
    prefs_body: bytes,
    login_status: int,
    login_body: bytes,
    set_status: int,
) -> None:
    """listen_port/set_listen_port against generated replies.

    an int or QbittorrentError; the sink then reports only valid ports (or none) as qBittorrent's
    port.
    """
    fake_qbt.answers = {
        "app/preferences": (prefs_status, prefs_body),
        "auth/login": (login_status, login_body),
        "app/setPreferences": (set_status, b""),
        "app/version": (200, b"v4.5.2"),
    }
    client = QbittorrentClient(fake_qbt.url, username="admin", password="fuzz-password", timeout=5)
    try:
        with contextlib.suppress(QbittorrentError):
            assert isinstance(client.listen_port(), int)
        with contextlib.suppress(QbittorrentError):
            assert 51813 == client.set_listen_port(51813)
    finally:
        client.close()
    inbox = RecordingInbox()
    sink = TorrentSink(
        QbittorrentClient(fake_qbt.url, username="admin", password="fuzz-password", timeout=5),
        inbox,
        check_interval=60,
        clock=utc_now,
    )
    try:
        sink.publish(Snapshot(status=Status.ACTIVE, updated_at=utc_now(), port=51813))
        assert sink.drain(10)
    finally:
        sink.close()
    reports, _events = inbox.snapshot()
    assert reports
    for name, health in reports:
        snapshot = Snapshot(
            status=Status.ACTIVE, updated_at=utc_now(), port=51813, sinks={name: health}
        )
        reported = data_document(snapshot, 900)["qbittorrent"]["port"]
        assert reported is None or valid_port(reported), health


def test_qbittorrent_reporting_port_zero_is_not_reported_as_its_port(fake_qbt: FakeQbt) -> None:
    """qBittorrent answering listen_port 0: the sink's health must not carry port 0."""
    fake_qbt.answers = {
        "app/preferences": (200, b'{"listen_port": 0}'),
        "app/setPreferences": (200, b""),
    }
    inbox = RecordingInbox()
    sink = TorrentSink(
        QbittorrentClient(fake_qbt.url, username="admin", password=None, timeout=5),
        inbox,
        check_interval=60,
        clock=utc_now,
    )
    try:
        sink.publish(Snapshot(status=Status.ACTIVE, updated_at=utc_now(), port=51813))
        assert sink.drain(10)
    finally:
        sink.close()
    reports, _events = inbox.snapshot()
    assert [None] == [health.port for _name, health in reports]


# --- MQTT command payloads ---------------------------------------------------------------

command_payloads = (
    st.binary(max_size=70)
    | st.text(max_size=70).map(str.encode)
    | st.sampled_from(
        [b"PRESS", b" PRESS\n", b"press", b"PRESS\x00", b"\xffPRESS", b"PRESS" * 13, b"\tPRESS\r\n"]
    )
)


def _is_press(payload: bytes) -> bool:
    try:
        return 0 < len(payload) <= 64 and payload.decode("utf-8").strip() == "PRESS"
    except UnicodeDecodeError:
        return False


@pytest.fixture
def mqtt_sink(mosquitto: Broker) -> Iterator[tuple[MqttSink, RecordingInbox]]:
    """A connected MqttSink on a real broker, with the inbox it reports to."""
    inbox = RecordingInbox()
    sink = MqttSink(mosquitto.settings(), inbox, qbittorrent_enabled=False, version=__version__)
    sink.start()
    assert sink.wait_connected(10)
    yield sink, inbox
    sink.close()


@settings(FUZZ, max_examples=40)
@given(st.lists(command_payloads, max_size=12))
def test_mqtt_command_payloads_only_press_counts(
    mqtt_sink: tuple[MqttSink, RecordingInbox],
    mosquitto: Broker,
    recorder: Callable[..., Recorder],
    payloads_sent: list[bytes],
) -> None:
    """Generated payloads on the refresh topic.

    exactly the ones that read PRESS become refresh commands, and the sink's network thread
    survives them all (a final new_port PRESS still arrives).
    """
    _sink, inbox = mqtt_sink
    publisher = _publisher(mosquitto, recorder)
    start = len(inbox.commands)
    for payload in payloads_sent:
        publisher.publish("pia-mqtt/refresh", payload)
    publisher.publish("pia-mqtt/new_port", b"PRESS")
    eventually(lambda: Command.NEW_PORT in [c for c, _ in inbox.commands[start:]], timeout=10)
    got = [c for c, _ in inbox.commands[start:]]
    expected = [Command.REFRESH] * sum(map(_is_press, payloads_sent)) + [Command.NEW_PORT]
    assert expected == got


_publishers: dict[int, Recorder] = {}


def _publisher(broker: Broker, recorder: Callable[..., Recorder]) -> Recorder:
    # One publishing client per broker for all examples (the recorder factory closes it).
    if broker.port not in _publishers:
        _publishers.clear()
        _publishers[broker.port] = recorder(broker, "pia-fuzz/none")
    return _publishers[broker.port]


# --- environment values ------------------------------------------------------------------

ENV_NAMES = sorted(
    {name.upper() for name in Settings.model_fields}
    | {f"{name}_FILE" for name in ("PIA_PASS", "QBITTORRENT_PASS", "MQTT_PASS", "GLUETUN_API_KEY")}
)
env_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
env_values = env_text | st.sampled_from(
    [
        "",
        "0",
        "1",
        "900",
        "901",
        "-1",
        "1e3",
        "nan",
        "inf",
        "true",
        "false",
        "yes",
        "10.0.0.1",
        "::1",
        "999.1.1.1",
        "http://127.0.0.1:8080",
        "mqtt://x",
        "/etc/hostname",
        "/nonexistent/file",
        "/",
        "pia",
        "gluetun",
        "DEBUG",
        "json",
        "a/#",
        "[]",
        "{}",
    ]
)


@settings(FUZZ, max_examples=300)
@given(st.dictionaries(st.sampled_from(ENV_NAMES), env_values, max_size=8), st.booleans())
def test_any_environment_gives_settings_or_a_config_error(
    environment: dict[str, str], require_credentials: bool
) -> None:
    """load_settings with generated variables.

    Settings or ConfigError, nothing else; a Settings result has a valid gateway port and a refresh
    interval PIA accepts.
    """
    with mock.patch.dict(os.environ, environment, clear=True):
        try:
            loaded = load_settings(require_credentials=require_credentials)
        except ConfigError:
            return
    assert valid_port(loaded.pia_gateway_port)
    assert 0 < loaded.port_forward_refresh_interval <= 900
    assert isinstance(loaded.port_file, Path)

"""MQTT 5 and the network thread against a real mosquitto.

Retained commands, refused publishes, the 3.1.1 fallback, a broker that drops us every
second, and paho's network thread sleeping while idle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pia_mqtt.core.model import Command, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.mqtt.health import MqttHealth
from pia_mqtt.sinks.portfiles import PortFilesSink
from tests.fixtures.common import RecordingInbox, eventually, free_port
from tests.fixtures.mosquitto import SINK_NOW, Broker, Recorder

T0 = SINK_NOW


def snapshot(**extra: Any) -> Snapshot:
    """A bound port."""
    values: dict[str, Any] = {
        "status": Status.ACTIVE,
        "updated_at": T0,
        "port": 54321,
        "last_refresh": T0,
        "next_refresh": T0 + timedelta(minutes=15),
    }
    return Snapshot(**(values | extra))


@pytest.fixture
def mosquitto_acl(tmp_path: Path) -> Iterator[Broker]:
    """A broker whose ACL lets clients read everything but not publish pia-mqtt/port."""
    workdir = tmp_path / "mosquitto-acl"
    workdir.mkdir()
    acl = workdir / "acl"
    writable = ["availability", "status", "state", "events", "refresh", "new_port"]
    acl.write_text(
        "topic read #\n"
        + "".join(f"topic write pia-mqtt/{name}\n" for name in writable)
        + "topic write homeassistant/#\n"
    )
    broker = Broker(workdir, extra_config=(f"acl_file {acl}",))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_press_retained_while_connected_is_ignored_and_cleared(
    mosquitto: Broker, make_mqtt_sink, recorder, inbox: RecordingInbox
) -> None:
    """`mosquitto_pub -r ... PRESS` while the daemon runs fires nothing and is removed (MQTT 5)."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    user = recorder(mosquitto, "pia-mqtt/new_port")
    user.publish("pia-mqtt/new_port", "PRESS", retain=True)
    user.wait_for("pia-mqtt/new_port", lambda m: m.payload == b"")  # the sink's clearing
    user.publish("pia-mqtt/refresh", "PRESS")  # a live press still works
    eventually(lambda: inbox.commands)
    assert inbox.commands == [(Command.REFRESH, "mqtt")]
    assert recorder(mosquitto, "pia-mqtt/new_port").messages == []  # nothing retained


def test_a_publish_the_acl_refuses_is_reported_not_in_sync(
    mosquitto_acl: Broker, make_mqtt_sink, inbox: RecordingInbox
) -> None:
    """The broker's PUBACK reason code for a refused topic makes MQTT's health out_of_sync."""
    sink = make_mqtt_sink(mosquitto_acl)
    sink.publish(snapshot())
    assert sink.flush(10)
    expected = SinkHealth(
        SyncState.OUT_OF_SYNC,
        error=f"MQTT broker 127.0.0.1:{mosquitto_acl.port}: refused publishing to "
        "pia-mqtt/port (Not authorized); check its ACL for MQTT_TOPIC",
    )
    assert expected == eventually(lambda: inbox.last_health() == expected and expected)


class OldBroker:
    """A loopback proxy in front of mosquitto that answers MQTT 5 like a 3.1.1-only broker.

    A CONNECT with protocol level 5 gets the 3.1.1 CONNACK "unacceptable protocol version"
    and the connection is closed; everything else is passed through to mosquitto.
    """

    def __init__(self, upstream: Broker) -> None:
        self.upstream = upstream
        self.refused_v5 = 0
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        first = conn.recv(4096)
        # Fixed header, remaining length (1 byte for a small CONNECT), "\0\4MQTT", level.
        if len(first) > 8 and first[0] == 0x10 and first[2:9] == b"\x00\x04MQTT\x05":
            self.refused_v5 += 1
            conn.sendall(b"\x20\x02\x00\x01")
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", self.upstream.port))
        up.sendall(first)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)
        up.close()
        conn.close()

    def close(self) -> None:
        """Stop accepting."""
        self._server.close()


def test_a_broker_without_mqtt_5_gets_3_1_1(
    mosquitto: Broker, make_mqtt_sink, recorder, inbox: RecordingInbox
) -> None:
    """A broker answering "unsupported protocol version" gets 3.1.1 and works normally."""
    old = OldBroker(mosquitto)
    try:
        sink = make_mqtt_sink(mosquitto, mqtt_port=old.port)
        sink.publish(snapshot())
        assert sink.flush(15)
        assert retained_port(recorder(mosquitto)) == "54321"
        recorder(mosquitto).publish("pia-mqtt/refresh", "PRESS")
        eventually(lambda: inbox.commands)
        assert (old.refused_v5, inbox.commands) == (1, [(Command.REFRESH, "mqtt")])
    finally:
        old.close()


def retained_port(rec: Recorder) -> str:
    """The retained port as a fresh subscriber sees it."""
    return rec.wait_for("pia-mqtt/port", lambda m: m.retain).text


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


def test_a_flapping_broker_logs_one_warning_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """A connection lost every second for two minutes logs a WARNING a minute, not per reconnect.

    Each WARNING is followed by one INFO 'connected' (the recovery); the repeats are DEBUG.
    """
    clock = FakeMonotonic()
    inbox = RecordingInbox()
    health = MqttHealth(inbox, "MQTT broker 127.0.0.1:1883", clock=lambda: T0, monotonic=clock)
    caplog.set_level(logging.DEBUG, logger="pia_mqtt")
    for _ in range(120):
        health.connecting_done(v5=True)
        health.connected()
        clock.now += 1
        health.problem("lost the connection (Session taken over)")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    connected = ("INFO", "connected to MQTT broker 127.0.0.1:1883 (MQTT 5)")
    assert lines == [
        connected,
        ("WARNING", ("MQTT broker 127.0.0.1:1883: lost the connection (Session taken over); "
                     "retrying with backoff (at most 60 s)")),
        connected,
        ("WARNING", ("MQTT broker 127.0.0.1:1883: lost the connection (Session taken over) "
                     "(59 more times in the last 60 s); retrying with backoff (at most 60 s)")),
        connected,
    ]  # fmt: skip


def test_mqtt_health_flaps_do_not_rewrite_the_data_file(tmp_path: Path) -> None:
    """A snapshot that differs only in MQTT's health (not in the file) leaves the file alone."""
    sink = PortFilesSink(tmp_path / "port.txt", tmp_path / "data.json", refresh_interval=900)
    sink.publish(snapshot())
    before = (tmp_path / "data.json").stat()
    for n in range(1, 6):
        state = SyncState.IN_SYNC if n % 2 else SyncState.UNREACHABLE
        sink.publish(
            snapshot(updated_at=T0 + timedelta(seconds=n), sinks={"mqtt": SinkHealth(state)})
        )
    after = (tmp_path / "data.json").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    sink.publish(snapshot(last_refresh=T0 + timedelta(minutes=15)))  # a real change is written
    assert (tmp_path / "data.json").stat().st_ino != before.st_ino


def _voluntary_switches(thread_name_prefix: str) -> int:
    """Voluntary context switches (wake-ups) so far of this process's thread of that name."""
    for thread in threading.enumerate():
        if thread.name.startswith(thread_name_prefix) and thread.native_id is not None:
            status = Path(f"/proc/{os.getpid()}/task/{thread.native_id}/status").read_text()
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    pytest.fail(f"no thread named {thread_name_prefix}...")


def test_the_network_thread_sleeps_while_idle(mosquitto: Broker, make_mqtt_sink) -> None:
    """Connected and idle, paho's thread does not wake every second (it did: loop timeout 1 s)."""
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot())
    assert sink.flush(10)
    time.sleep(0.5)  # the announcement's acknowledgements settle
    before = _voluntary_switches("paho-mqtt-client")
    time.sleep(4)  # idle: no traffic, no keep-alive ping due (60 s)
    woke = _voluntary_switches("paho-mqtt-client") - before
    assert woke <= 1


def test_a_publish_from_another_thread_is_sent_at_once(mosquitto: Broker, make_mqtt_sink) -> None:
    """With the long loop timeout a publish still goes out immediately (paho's socket pair)."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    time.sleep(0.5)  # paho's thread is asleep in select
    got = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{free_port()}")
    client.on_message = lambda *_: got.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe("pia-mqtt/state", qos=1)
    client.loop_start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        sink.publish(snapshot(port=2222))
        assert got.wait(5)
        print(f"publish to delivery: {(time.monotonic() - started) * 1000:.1f} ms")
    finally:
        client.disconnect()
        client.loop_stop()

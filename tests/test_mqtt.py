"""The MQTT sink against a real mosquitto: lifecycle, retained topics, commands, recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pia_mqtt import __version__, redact
from pia_mqtt.core.model import (
    Command,
    Event,
    EventKind,
    SinkHealth,
    Snapshot,
    Status,
    SyncState,
)
from pia_mqtt.errors import MqttError
from pia_mqtt.mqtt import discovery
from pia_mqtt.mqtt.sink import MqttSink
from pia_mqtt.settings import Settings
from tests.fixtures.common import RecordingInbox, eventually
from tests.fixtures.mosquitto import SINK_NOW, Broker, Recorder

T0 = SINK_NOW
SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "state.schema.json").read_text())
CONFIG_TOPIC = "homeassistant/device/pia_mqtt/config"


def snapshot(port: int | None = 54321, status: Status = Status.ACTIVE, **extra: Any) -> Snapshot:
    """A realistic snapshot of a bound port."""
    values: dict[str, Any] = {
        "status": status,
        "updated_at": T0,
        "port": port,
        "gateway": "10.13.128.1",
        "hostname": "amsterdam404",
        "expires_at": T0 + timedelta(days=60),
        "last_refresh": T0,
        "next_refresh": T0 + timedelta(minutes=15),
    }
    return Snapshot(**(values | extra))


def retained(recorder: Recorder, topic: str) -> str:
    """The retained value of ``topic`` as a fresh subscriber receives it."""
    return recorder.wait_for(topic, lambda m: m.retain).text


def test_connect_publishes_every_retained_topic(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """After connecting, availability, discovery, port, status and state are retained on the broker."""
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot())
    assert sink.flush(10)
    fresh = recorder(mosquitto)
    expected = {
        "pia-mqtt/availability": "online",
        "pia-mqtt/port": "54321",
        "pia-mqtt/status": "active",
        "pia-mqtt/state": json.dumps(snapshot().to_json()),
        CONFIG_TOPIC: discovery.discovery_message(
            "pia-mqtt", prefix="homeassistant", enabled=True, version=__version__,
            qbittorrent=False, refresh_interval=900,
        ).payload,
    }  # fmt: skip
    assert expected == {topic: retained(fresh, topic) for topic in expected}


def test_state_document_matches_the_published_schema(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """The retained state JSON validates against docs/state.schema.json, with and without a port."""
    rec = recorder(mosquitto, "pia-mqtt/state")
    sink = make_mqtt_sink(mosquitto, qbittorrent=True)
    with_sinks = snapshot(
        sinks={"qbittorrent": SinkHealth(SyncState.IN_SYNC, port=54321, last_sync=T0)}
    )
    for snap in (snapshot(port=None, status=Status.ERROR, last_error="bind failed"), with_sinks):
        sink.publish(snap)
        message = rec.wait_for(
            "pia-mqtt/state", lambda m, s=snap: json.loads(m.payload) == s.to_json()
        )
        jsonschema.validate(json.loads(message.payload), SCHEMA)


def test_publishing_before_the_connection_sends_the_latest_snapshot_on_connect(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """Snapshots given while disconnected are not queued: the connect publishes only the latest."""
    rec = recorder(mosquitto, "pia-mqtt/#")
    sink = make_mqtt_sink(mosquitto, start=False)
    sink.publish(snapshot(port=1111))
    sink.publish(snapshot(port=2222))
    sink.start()
    rec.wait_for("pia-mqtt/state")  # the last topic of the announcement
    assert [m.text for m in rec.on("pia-mqtt/port")] == ["2222"]


def test_port_none_keeps_the_last_retained_port(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """A snapshot without a port never publishes 0 or an empty port; the last port stays retained."""
    rec = recorder(mosquitto, "pia-mqtt/#")
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    sink.publish(snapshot(port=54321))
    sink.publish(snapshot(port=None, status=Status.ACQUIRING))
    sink.publish(snapshot(port=0, status=Status.ERROR))
    rec.wait_for("pia-mqtt/status", lambda m: m.text == "error")
    assert [m.text for m in rec.on("pia-mqtt/port")] == ["54321"]
    assert [m.text for m in rec.on("pia-mqtt/status")] == ["active", "acquiring", "error"]


def test_events_are_published_not_retained(mosquitto: Broker, make_mqtt_sink, recorder) -> None:
    """An event goes to <topic>/events as JSON without the retain flag."""
    rec = recorder(mosquitto, "pia-mqtt/events")
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    event = Event(EventKind.PORT_CHANGED, T0, "port changed from 1111 to 54321", port=54321)
    sink.event(event)
    message = rec.wait_for("pia-mqtt/events")
    assert (event.to_json(), False) == (json.loads(message.payload), message.retain)


@pytest.mark.parametrize(
    ("topic", "command"),
    [("pia-mqtt/refresh", Command.REFRESH), ("pia-mqtt/new_port", Command.NEW_PORT)],
)
def test_button_press_queues_the_command(
    mosquitto: Broker, make_mqtt_sink, recorder, inbox: RecordingInbox, topic: str, command: Command
) -> None:
    """PRESS (as HA sends it: not retained) on a command topic reaches the engine's inbox."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    recorder(mosquitto).publish(topic, " PRESS\n")
    assert [(command, "mqtt")] == eventually(lambda: inbox.commands)


def test_retained_press_is_ignored_and_cleared(
    mosquitto: Broker, make_mqtt_sink, recorder, inbox: RecordingInbox
) -> None:
    """A leftover retained PRESS never fires a command; the sink clears it from the broker."""
    user = recorder(mosquitto, "pia-mqtt/refresh")
    user.publish("pia-mqtt/refresh", "PRESS", retain=True)
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    # The clearing message (empty, retained) proves the sink saw the retained PRESS.
    user.wait_for("pia-mqtt/refresh", lambda m: m.payload == b"")
    user.publish("pia-mqtt/new_port", "PRESS")  # a live press after it still works
    eventually(lambda: inbox.commands)
    assert inbox.commands == [(Command.NEW_PORT, "mqtt")]
    assert [m for m in recorder(mosquitto, "pia-mqtt/refresh").messages if m.retain] == []


def test_garbage_commands_are_ignored(
    mosquitto: Broker, make_mqtt_sink, recorder, inbox: RecordingInbox, caplog
) -> None:
    """Wrong case, other words, invalid UTF-8, huge and empty payloads are ignored; the client keeps working."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    user = recorder(mosquitto)
    for payload in (b"press", b"ON", b"\xff\xfePRESS", b"PRESS" * 100_000, b""):
        user.publish("pia-mqtt/refresh", payload)
    user.publish("pia-mqtt/new_port", "PRESS")
    eventually(lambda: inbox.commands)
    assert inbox.commands == [(Command.NEW_PORT, "mqtt")]
    assert sink.connected
    ignored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignoring")]
    assert len(ignored) == 4  # one line each; the empty message (a retained-clear) is not a command


def test_broker_restart_brings_back_the_current_state(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """After a broker restart (retained messages lost) availability, discovery and the latest state return."""
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot(port=1111))
    assert sink.flush(10)
    mosquitto.stop()
    eventually(lambda: not sink.connected)
    sink.publish(snapshot(port=2222, last_refresh=T0 + timedelta(minutes=15)))
    mosquitto.start()
    fresh = recorder(mosquitto)
    expected = {
        "pia-mqtt/availability": "online",
        "pia-mqtt/port": "2222",
        "pia-mqtt/state": json.dumps(
            snapshot(port=2222, last_refresh=T0 + timedelta(minutes=15)).to_json()
        ),
    }

    def back() -> dict[str, str]:
        got = {t: m.text for t in expected if (m := fresh.last(t)) is not None}
        assert expected == got
        assert fresh.last(CONFIG_TOPIC) is not None
        return got

    eventually(back, timeout=5)


def test_messages_in_flight_at_a_crash_do_not_overwrite_the_current_state(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """Paho re-sends unacknowledged messages after a reconnect; the current snapshot still wins."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    mosquitto.pause()
    sink.publish(snapshot(port=1111))  # written to the socket, never acknowledged
    mosquitto.kill()
    eventually(lambda: not sink.connected)
    sink.publish(snapshot(port=2222))
    mosquitto.start()
    assert sink.flush(10)
    fresh = recorder(mosquitto)
    assert retained(fresh, "pia-mqtt/port") == "2222"
    assert json.loads(retained(fresh, "pia-mqtt/state"))["port"] == 2222


def test_home_assistant_birth_resends_discovery(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """`online` on homeassistant/status makes the sink re-send discovery and the state."""
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot())
    assert sink.flush(10)
    rec = recorder(mosquitto)
    rec.wait_for(CONFIG_TOPIC, lambda m: m.retain)
    rec.clear()
    rec.publish("homeassistant/status", "online")
    resent = rec.wait_for(CONFIG_TOPIC, lambda m: not m.retain)
    assert json.loads(resent.payload)["device"]["identifiers"] == ["pia_mqtt"]
    rec.wait_for("pia-mqtt/state", lambda m: json.loads(m.payload) == snapshot().to_json())


def test_discovery_off_removes_the_device(mosquitto: Broker, make_mqtt_sink, recorder) -> None:
    """With HA_DISCOVERY=false an empty retained config removes a device published earlier."""
    rec = recorder(mosquitto, CONFIG_TOPIC)
    first = make_mqtt_sink(mosquitto)
    assert first.wait_connected(10)
    rec.wait_for(CONFIG_TOPIC, lambda m: m.payload != b"")
    first.close()
    second = make_mqtt_sink(mosquitto, ha_discovery=False)
    assert second.flush(10)
    rec.wait_for(CONFIG_TOPIC, lambda m: m.payload == b"")
    assert recorder(mosquitto, CONFIG_TOPIC).messages == []


def test_close_publishes_offline_retained(mosquitto: Broker, make_mqtt_sink, recorder) -> None:
    """close() leaves `offline` retained on the availability topic."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    sink.close()
    assert retained(recorder(mosquitto), "pia-mqtt/availability") == "offline"


def test_close_while_the_broker_is_down_returns(mosquitto: Broker, make_mqtt_sink) -> None:
    """close() with no broker neither raises nor hangs; publishing meanwhile is harmless."""
    sink = make_mqtt_sink(mosquitto)
    assert sink.wait_connected(10)
    mosquitto.stop()
    eventually(lambda: not sink.connected)
    sink.publish(snapshot())
    sink.event(Event(EventKind.LOST, T0, "lost"))
    sink.close()
    assert not sink.connected


def test_start_with_the_broker_down_connects_later(
    mosquitto: Broker, make_mqtt_sink, inbox: RecordingInbox
) -> None:
    """start() returns at once when no broker listens; the sink connects once one appears."""
    mosquitto.stop()
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot())
    eventually(lambda: inbox.last_health() == SinkHealth(SyncState.UNREACHABLE, error=(
        f"MQTT broker 127.0.0.1:{mosquitto.port}: cannot connect (is the broker running, "
        "are MQTT_HOST/MQTT_PORT/MQTT_TLS right?)")))  # fmt: skip
    mosquitto.start()
    assert sink.wait_connected(10)
    assert SinkHealth(SyncState.IN_SYNC, last_sync=T0) == inbox.last_health()


LAST_WILL_SCRIPT = """
import sys, threading
from pia_mqtt.mqtt.sink import MqttSink
from pia_mqtt.settings import Settings
from tests.fixtures.common import RecordingInbox
from tests.test_mqtt import snapshot
sink = MqttSink(Settings(mqtt_host="127.0.0.1", mqtt_port=int(sys.argv[1])), RecordingInbox(),
                qbittorrent_enabled=False, version="test")
sink.start()
sink.publish(snapshot())
assert sink.flush(10)
print("ready", flush=True)
threading.Event().wait()
"""


def test_last_will_marks_a_killed_process_offline(mosquitto: Broker, recorder) -> None:
    """SIGKILL on a running publisher makes the broker publish the retained `offline` will."""
    root = Path(__file__).parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", LAST_WILL_SCRIPT, str(mosquitto.port)],
        cwd=root, stdout=subprocess.PIPE, env=os.environ | {"PYTHONPATH": str(root)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        rec = recorder(mosquitto, "pia-mqtt/availability")
        rec.wait_for("pia-mqtt/availability", lambda m: m.text == "online")
        os.kill(proc.pid, signal.SIGKILL)
        rec.wait_for("pia-mqtt/availability", lambda m: m.text == "offline")
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert retained(recorder(mosquitto), "pia-mqtt/availability") == "offline"


def test_username_and_password(mosquitto_auth: Broker, make_mqtt_sink, recorder) -> None:
    """MQTT_USER/MQTT_PASS log in to a broker that refuses anonymous clients."""
    sink = make_mqtt_sink(mosquitto_auth)
    sink.publish(snapshot())
    assert sink.flush(10)
    assert retained(recorder(mosquitto_auth), "pia-mqtt/port") == "54321"


def test_wrong_password_is_reported_not_raised(
    mosquitto_auth: Broker, make_mqtt_sink, inbox: RecordingInbox, caplog
) -> None:
    """A refused password leaves the sink disconnected, reports auth_failed and never logs the password."""
    sink = make_mqtt_sink(mosquitto_auth, mqtt_pass="wrong-password-123")
    sink.publish(snapshot())
    health = eventually(inbox.last_health)
    expected = SinkHealth(SyncState.AUTH_FAILED, error=(
        f"MQTT broker 127.0.0.1:{mosquitto_auth.port}: the broker refused MQTT_USER/MQTT_PASS (Not authorized)"))  # fmt: skip
    assert (expected, False) == (health, sink.connected)
    assert "wrong-password-123" not in caplog.text


def test_tls_with_a_private_ca(mosquitto_tls: Broker, make_mqtt_sink, recorder) -> None:
    """MQTT_TLS with MQTT_CA_CERT connects to a broker whose certificate comes from that CA."""
    sink = make_mqtt_sink(mosquitto_tls)
    sink.publish(snapshot())
    assert sink.flush(10)
    assert retained(recorder(mosquitto_tls), "pia-mqtt/availability") == "online"


# paho-mqtt 2.2 does not close the socket when the TLS handshake fails (client.py,
# _ssl_wrap_socket); the garbage collector closes it with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_tls_refuses_an_unknown_ca(
    mosquitto_tls: Broker, make_mqtt_sink, inbox: RecordingInbox
) -> None:
    """Without the broker's CA the TLS handshake fails: reported as unreachable, never connected."""
    sink = make_mqtt_sink(mosquitto_tls, mqtt_ca_cert=None)
    eventually(lambda: inbox.last_health() is not None)
    assert (inbox.last_health().state, sink.connected) == (SyncState.UNREACHABLE, False)


def test_secrets_never_reach_the_state_topic(mosquitto: Broker, make_mqtt_sink, recorder) -> None:
    """A registered secret inside an error text is masked in the retained state document."""
    redact.register("hunter2-mqtt-secret")
    rec = recorder(mosquitto, "pia-mqtt/state")
    sink = make_mqtt_sink(mosquitto)
    sink.publish(snapshot(status=Status.ERROR, last_error="login as hunter2-mqtt-secret refused"))
    message = rec.wait_for("pia-mqtt/state")
    assert json.loads(message.payload)["last_error"] == "login as *** refused"
    assert b"hunter2" not in message.payload


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


def test_check_resends_the_state_only_after_a_quiet_spell(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """check() re-publishes port, status and state once 1.25 intervals passed without a publish."""
    clock = FakeMonotonic()
    rec = recorder(mosquitto, "pia-mqtt/#")
    sink = make_mqtt_sink(mosquitto, port_forward_refresh_interval=600, monotonic=clock)
    sink.publish(snapshot())
    rec.wait_for("pia-mqtt/state")
    clock.now += 600  # one interval: keep-alives still publish by themselves
    sink.check(snapshot())
    clock.now += 150  # 1.25 intervals of silence: the engine may be hung
    sink.check(snapshot())
    assert sink.flush(10)
    eventually(lambda: len(rec.on("pia-mqtt/state")) >= 2, timeout=2)
    counts = [len(rec.on(f"pia-mqtt/{t}")) for t in ("port", "status", "state")]
    assert ([2, 2, 2], 300.0) == (counts, sink.check_interval)


def test_a_keep_alive_publishes_each_topic_once(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """The check due at the same moment as a keep-alive sends no stale copy before it."""
    clock = FakeMonotonic()
    rec = recorder(mosquitto, "pia-mqtt/#")
    sink = make_mqtt_sink(mosquitto, port_forward_refresh_interval=900, monotonic=clock)
    first = snapshot()
    sink.publish(first)
    rec.wait_for("pia-mqtt/state")
    clock.now += 900
    sink.check(first)  # the engine's check timer fires a moment before the keep-alive
    kept = snapshot(
        last_refresh=T0 + timedelta(minutes=15), next_refresh=T0 + timedelta(minutes=30)
    )
    sink.publish(kept)
    rec.wait_for("pia-mqtt/state", lambda m: json.loads(m.payload) == kept.to_json())
    assert sink.flush(10)
    states = [json.loads(m.payload)["next_refresh"] for m in rec.on("pia-mqtt/state")]
    assert (states, [m.text for m in rec.on("pia-mqtt/status")]) == (
        [first.to_json()["next_refresh"], kept.to_json()["next_refresh"]],
        ["active", "active"],
    )


def test_a_change_only_in_unseen_sink_health_publishes_nothing(
    mosquitto: Broker, make_mqtt_sink, recorder
) -> None:
    """`acquiring` goes out once at start: MQTT's own health report (not in the state) is no change."""
    rec = recorder(mosquitto, "pia-mqtt/#")
    sink = make_mqtt_sink(mosquitto)
    acquiring = snapshot(port=None, status=Status.ACQUIRING)
    sink.publish(acquiring)
    assert sink.flush(10)
    later = snapshot(
        port=None, status=Status.ACQUIRING, updated_at=T0 + timedelta(seconds=1),
        sinks={"mqtt": SinkHealth(SyncState.IN_SYNC, last_sync=T0)},
    )  # fmt: skip
    sink.publish(later)
    sink.publish(snapshot())  # then the port is bound
    # status goes out before state: wait for the last message of the change, not the first
    rec.wait_for("pia-mqtt/state", lambda m: json.loads(m.text)["status"] == "active")
    assert [m.text for m in rec.on("pia-mqtt/status")] == ["acquiring", "active"]
    assert [json.loads(m.text)["status"] for m in rec.on("pia-mqtt/state")] == [
        "acquiring",
        "active",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mqtt_topic": "pia/#"}, "MQTT_TOPIC: must be a plain topic without + or # (got 'pia/#')"),
        (
            {"ha_discovery_prefix": "ha/+"},
            "HA_DISCOVERY_PREFIX: must be a plain topic without + or # (got 'ha/+')",
        ),
        ({"mqtt_host": None}, "MQTT is off: set MQTT_HOST to the broker's address"),
    ],
)
def test_unusable_settings_raise_a_clear_error(
    inbox: RecordingInbox, overrides: dict[str, Any], message: str
) -> None:
    """Wildcards in the topics or no host raise MqttError naming the variable, before any connection."""
    settings = Settings(**({"mqtt_host": "127.0.0.1"} | overrides))
    with pytest.raises(MqttError) as caught:
        MqttSink(settings, inbox, qbittorrent_enabled=False, version="test")
    assert str(caught.value) == message

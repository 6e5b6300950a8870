"""Button floods: coalesced, rate-limited, never past a backoff, reported in one line.

10,000 ``refresh`` and 2,000 ``new_port`` presses, in-process (``engine.command``) and
through the real MQTT path (a real mosquitto, the real MqttSink, paho's thread posting to
the engine), counted at the PIA simulator. Time is the harness's fake clock, so the
60-second ``new_port`` limit takes no real time.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import time_machine
from paho.mqtt.enums import CallbackAPIVersion

from pia_mqtt import __version__
from pia_mqtt.core.engine import Engine, utc_now
from pia_mqtt.core.model import Command, Event, SinkHealth, Status
from pia_mqtt.mqtt.sink import MqttSink
from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually
from tests.fixtures.mosquitto import Broker
from tests.harness import Daemon, advance, at, build_daemon

REFRESHES = 10_000
NEW_PORTS = 2_000
BATCH = 500
MERGED = re.compile(
    r"Command (\w+) from \w+(?: \(deferred\))?(?:; (\d+) more presses merged into it)?"
)


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


def _served(caplog: pytest.LogCaptureFixture, name: str) -> list[int]:
    """For each served press of ``name``: how many presses were merged into it."""
    served = []
    for record in caplog.records:
        match = MERGED.fullmatch(record.getMessage())
        if match and match.group(1) == name:
            served.append(int(match.group(2) or 0))
    return served


def _command_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Command ")]


def _flood_outcome(
    sim: PiaSimulator,
    daemon: Daemon,
    traveller: time_machine.Traveller,
    press: Callable[[Command, int], None],
) -> dict[str, object]:
    """Start, bind, flood refresh then new_port, let every limit run out; what PIA saw."""
    daemon.engine.start()
    advance(daemon.engine, traveller, 1)
    first_port = daemon.engine.snapshot.port
    start = sim.gateways[0].stats()
    press(Command.REFRESH, REFRESHES)
    advance(daemon.engine, traveller, 0.5)
    after_first_refresh = sim.gateways[0].stats().binds_ok - start.binds_ok
    advance(daemon.engine, traveller, 10)
    refresh_binds = sim.gateways[0].stats().binds_ok - start.binds_ok
    tokens_before = sim.token_endpoint.stats().requests
    press(Command.NEW_PORT, NEW_PORTS)
    advance(daemon.engine, traveller, 0.5)
    after_first_new_port = sim.gateways[0].stats().signature_requests
    advance(daemon.engine, traveller, 120)
    end = sim.gateways[0].stats()
    return {
        "binds after the first refresh press": after_first_refresh,
        "binds for 10,000 refresh presses": refresh_binds,
        "signatures after the first new_port press": after_first_new_port,
        "signatures in all": end.signature_requests,
        "token requests for 2,000 new_port presses": sim.token_endpoint.stats().requests
        - tokens_before,
        "ports": len(set(end.bound_ports)),
        "status": daemon.engine.snapshot.status,
        "port changed": daemon.engine.snapshot.port != first_port,
    }


EXPECTED = {
    # The first press at once (start-up does not count), then one deferred press 5 s later.
    "binds after the first refresh press": 1,
    "binds for 10,000 refresh presses": 2,
    # Start-up's signature, the first new_port at once, one deferred 60 s later.
    "signatures after the first new_port press": 2,
    "signatures in all": 3,
    "token requests for 2,000 new_port presses": 2,
    "ports": 3,
    "status": Status.ACTIVE,
    "port changed": True,
}


def test_a_flood_of_presses_in_process_reaches_pia_at_most_twice_per_command(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10,000 refresh and 2,000 new_port presses queued at once: 2 binds, 2 new ports.

    Every press is accounted for in the log (served or merged), in a handful of lines.
    Before: 10,000 bindPort requests and 2,000 token requests with the credentials.
    """
    caplog.set_level(logging.INFO)
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=3600)

        def press(command: Command, times: int) -> None:
            for _ in range(times):
                daemon.engine.command(command, source="test")

        outcome = _flood_outcome(pia_sim, daemon, traveller, press)
        daemon.engine.close()
    refreshes, new_ports = _served(caplog, "refresh"), _served(caplog, "new_port")
    assert EXPECTED == outcome
    assert (2, REFRESHES) == (len(refreshes), len(refreshes) + sum(refreshes))
    assert (2, NEW_PORTS) == (len(new_ports), len(new_ports) + sum(new_ports))
    assert len(_command_lines(caplog)) <= 6, _command_lines(caplog)


class Forward:
    """The MQTT sink's inbox, forwarding to an engine built after the sink; counts presses."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.presses = 0
        self._lock = threading.Lock()

    def command(self, command: Command, *, source: str) -> None:
        """Count, then forward."""
        with self._lock:
            self.presses += 1
        assert self.engine is not None
        self.engine.command(command, source=source)

    def report(self, sink: str, health: SinkHealth) -> None:
        """Forward."""
        assert self.engine is not None
        self.engine.report(sink, health)

    def emit(self, event: Event) -> None:
        """Forward."""
        assert self.engine is not None
        self.engine.emit(event)


def test_a_flood_of_mqtt_presses_reaches_pia_at_most_twice_per_command(
    pia_sim: PiaSimulator, tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The same floods as PRESS messages on `<topic>/refresh` and `<topic>/new_port`.

    Published at QoS 1 by a user's client through a real mosquitto to the real MqttSink;
    every press arrives, and PIA sees what it sees for one press and one deferred press.
    """
    caplog.set_level(logging.INFO)
    forward = Forward()
    mqtt = MqttSink(mosquitto.settings(), forward, qbittorrent_enabled=False, version=__version__)
    user = paho.Client(CallbackAPIVersion.VERSION2, client_id="flooder")
    user.max_inflight_messages_set(1000)
    user.connect(mosquitto.host, mosquitto.port)
    user.loop_start()
    try:
        with at(utc_now()) as traveller:
            daemon = build_daemon(pia_sim, tmp_path, watch_interval=3600, extra_sinks=[mqtt])
            forward.engine = daemon.engine
            mqtt.start()
            assert mqtt.wait_connected(10)
            topics = {Command.REFRESH: "pia-mqtt/refresh", Command.NEW_PORT: "pia-mqtt/new_port"}

            def press(command: Command, times: int) -> None:
                # In batches: mosquitto queues at most 1,000 QoS 1 messages for a subscriber
                # and drops the rest; the engine's clock stands still meanwhile, so every
                # press still falls inside one limit.
                for sent in range(0, times, BATCH):
                    expected = forward.presses + min(BATCH, times - sent)
                    infos = [
                        user.publish(topics[command], "PRESS", qos=1)
                        for _ in range(min(BATCH, times - sent))
                    ]
                    infos[-1].wait_for_publish(30)
                    eventually(lambda expected=expected: forward.presses == expected, timeout=60)

            outcome = _flood_outcome(pia_sim, daemon, traveller, press)
            daemon.engine.close()
    finally:
        user.disconnect()
        user.loop_stop()
    refreshes, new_ports = _served(caplog, "refresh"), _served(caplog, "new_port")
    assert EXPECTED == outcome
    assert REFRESHES + NEW_PORTS == forward.presses
    assert (2, REFRESHES) == (len(refreshes), len(refreshes) + sum(refreshes))
    assert (2, NEW_PORTS) == (len(new_ports), len(new_ports) + sum(new_ports))
    assert not [m for m in _command_lines(caplog) if "requested over MQTT" in m]


def test_presses_during_the_credential_backoff_never_cause_a_token_request(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong PIA credentials: presses wait for the minute-long backoff, as the retry does.

    Token requests stay at one a minute however many refresh and new_port presses arrive;
    refresh is left to the planned retry (one log line), new_port waits for the backoff.
    Before: every press asked PIA for a token with the refused credentials at once.
    """
    caplog.set_level(logging.INFO)
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, password="wrong-password-123", watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        tokens = [pia_sim.token_endpoint.stats().requests]
        for second in range(1, 59):
            daemon.engine.command(Command.REFRESH, source="test")
            daemon.engine.command(Command.NEW_PORT, source="test")
            advance(daemon.engine, traveller, 1)
            if second in (10, 58):
                tokens.append(pia_sim.token_endpoint.stats().requests)
        advance(daemon.engine, traveller, 65)
        tokens.append(pia_sim.token_endpoint.stats().requests)
        daemon.engine.close()
    lines = _command_lines(caplog)
    assert [1, 1, 1, 3] == tokens
    assert Status.ERROR == daemon.engine.snapshot.status
    assert 1 == len([m for m in lines if "left to the retry" in m and "refresh" in m]), lines
    assert 1 == len([m for m in lines if "new_port" in m and "deferred" in m]), lines


def test_the_real_process_serves_a_mqtt_flood_with_one_deferred_press(
    pia_sim: PiaSimulator, tmp_path: Path, mosquitto: Broker
) -> None:
    """`pia-mqtt run` with MQTT: 10,000 refresh PRESS messages, then 2,000 new_port.

    Real time here, so the flood spans a few 5 s limits: binds happen only for presses
    served (at most one per 5 s), every press is accounted for in the log (served, or
    merged into a deferred press), and new_port makes one new signature at once (the
    deferred one is 60 s away). Before: a bindPort and a token request per press.
    """
    shared = Path(tempfile.mkdtemp(prefix="pia-flood-", dir="/tmp"))
    shared.chmod(0o755)
    config = config_dir(shared, owner=None)
    env = daemon_env(
        pia_sim,
        shared,
        config,
        MQTT_HOST=mosquitto.host,
        MQTT_PORT=str(mosquitto.port),
        LOG_LEVEL="DEBUG",  # one line per press arriving: how the test knows they all did
    )
    daemon = start_daemon(env, shared / "daemon.log", user=None)
    user = paho.Client(CallbackAPIVersion.VERSION2, client_id="flooder")
    user.max_inflight_messages_set(1000)
    user.connect(mosquitto.host, mosquitto.port)
    user.loop_start()

    def flood(topic: str, name: str, times: int) -> float:
        started = time.monotonic()
        arrived = f"{name} requested over MQTT"
        for sent in range(0, times, BATCH):
            count = min(BATCH, times - sent)
            infos = [user.publish(topic, "PRESS", qos=1) for _ in range(count)]
            infos[-1].wait_for_publish(30)
            eventually(lambda s=sent + count: daemon.log().count(arrived) == s, timeout=60)
        return time.monotonic() - started

    try:
        eventually(
            lambda: daemon.running() and "connected to MQTT broker" in daemon.log(), timeout=30
        )
        eventually(lambda: pia_sim.gateways[0].stats().binds_ok == 1, timeout=30)
        took = flood("pia-mqtt/refresh", "refresh", REFRESHES)
        eventually(lambda: sum(_runs(daemon.log(), "refresh")) == REFRESHES, timeout=30)
        runs = len(_runs(daemon.log(), "refresh"))
        # "Command refresh" is logged as a press is served, before its bind completes
        eventually(lambda: pia_sim.gateways[0].stats().binds_ok - 1 >= runs, timeout=15)
        refresh_binds = pia_sim.gateways[0].stats().binds_ok - 1
        tokens = pia_sim.token_endpoint.stats().requests
        flood("pia-mqtt/new_port", "new_port", NEW_PORTS)
        time.sleep(1)
        stats = pia_sim.gateways[0].stats()
        new_port_tokens = pia_sim.token_endpoint.stats().requests - tokens
        code = daemon.stop()
    finally:
        user.disconnect()
        user.loop_stop()
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(10)
        log = daemon.log()
        shutil.rmtree(shared, ignore_errors=True)
    print(f"10,000 refresh presses over {took:.1f} s: {runs} served")
    assert runs == refresh_binds
    assert 2 <= runs <= 2 + took / 5, (runs, took)
    assert 1 == len(_runs(log, "new_port"))
    assert (2, 1) == (stats.signature_requests, new_port_tokens)
    assert 0 == code


def _runs(log: str, name: str) -> list[int]:
    """For each press of ``name`` served, 1 + the presses merged into it (from the log)."""
    found = re.findall(
        rf"Command {name} from mqtt(?: \(deferred\); (\d+) more presses merged into it)?$",
        log,
        re.MULTILINE,
    )
    return [1 + int(n or 0) for n in found]

"""Peers failing under a running `pia-mqtt run`: the MQTT broker and qBittorrent.

Real processes throughout: the daemon (`python -m pia_mqtt run`), mosquitto and
qbittorrent-nox, PIA played by the HTTPS simulator. Sink-level cases (qBittorrent restarted
with --torrenting-port, the wrong-password latch, broker restarts under an MqttSink) live in
tests/test_qbittorrent.py and tests/test_mqtt.py; these check the whole product.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import Daemon, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually, free_port
from tests.fixtures.mosquitto import Broker, Recorder
from tests.fixtures.qbittorrent import QbittorrentFactory

pytestmark = pytest.mark.timeout(150)


def _data(config: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads((config / "pia-port-data.json").read_text())
    except FileNotFoundError:
        return {}
    return document


def test_broker_restart_while_running_brings_back_retained_state_and_online(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    mosquitto: Broker,
    recorder: Callable[..., Recorder],
) -> None:
    """mosquitto stopped (retained messages lost.

    no persistence) and started again while `pia-mqtt run` runs: the keep-alive goes on meanwhile,
    and after the reconnect the broker holds port, status active, the state document and
    availability online again.
    """
    config = config_dir(shared_dir)
    env = daemon_env(
        pia_sim,
        shared_dir,
        config,
        PORT_FORWARD_REFRESH_INTERVAL="2",
        MQTT_HOST=mosquitto.host,
        MQTT_PORT=str(mosquitto.port),
    )
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    before = recorder(mosquitto, "pia-mqtt/#")
    before.wait_for("pia-mqtt/status", lambda m: m.text == "active", timeout=30)
    port = pia_sim.gateways[0].stats().bound_ports[0]
    mosquitto.stop()
    binds_when_stopped = pia_sim.gateways[0].stats().binds_ok
    eventually(
        lambda: daemon.running() and pia_sim.gateways[0].stats().binds_ok >= binds_when_stopped + 2
    )
    mosquitto.start()
    after = recorder(mosquitto, "pia-mqtt/#")
    after.wait_for("pia-mqtt/availability", lambda m: m.text == "online", timeout=70)
    retained_port = after.wait_for("pia-mqtt/port").text
    status = after.wait_for("pia-mqtt/status", lambda m: m.text == "active").text
    state = json.loads(after.wait_for("pia-mqtt/state").text)
    code = daemon.stop()
    assert (str(port), "active") == (retained_port, status)
    assert (port, "active") == (state["port"], state["status"])
    assert {port} == set(pia_sim.gateways[0].stats().bound_ports)
    assert 0 == code, daemon.log()
    assert "lost the connection" in daemon.log()


def test_qbittorrent_stopped_then_restarted_on_another_port_is_repaired(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    qbittorrent_factory: QbittorrentFactory,
) -> None:
    """qBittorrent goes away (data file.

    qbittorrent unreachable, PIA still active), comes back with --torrenting-port set to another
    port: the next check sets the forwarded port again (data file: in_sync) and logs the repair.
    """
    qbt = qbittorrent_factory()
    config = config_dir(shared_dir)
    env = daemon_env(
        pia_sim,
        shared_dir,
        config,
        PORT_FORWARD_REFRESH_INTERVAL="5",
        QBITTORRENT_HOST=qbt.url,
        QBITTORRENT_USER=qbt.user,
        QBITTORRENT_PASS=qbt.password,
        QBITTORRENT_CHECK_INTERVAL="1",
    )
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)

    def qbt_state() -> str | None:
        daemon.running()
        return (_data(config).get("qbittorrent") or {}).get("state")

    eventually(lambda: qbt_state() == "in_sync", timeout=30)
    port = _data(config)["port"]
    synced_first = qbt.preferences()["listen_port"]
    qbt.stop()
    eventually(lambda: qbt_state() == "unreachable", timeout=30)
    status_while_down = _data(config)["status"]
    other = free_port()
    qbt.start(torrenting_port=other)
    eventually(lambda: qbt.preferences()["listen_port"] == port, timeout=30)
    eventually(lambda: qbt_state() == "in_sync", timeout=30)
    code = daemon.stop()
    log = daemon.log()
    assert port == synced_first
    assert "active" == status_while_down
    assert f"qBittorrent listen port set to {port} (was {other})" in log
    assert 0 == code, log


def test_wrong_qbittorrent_password_latches_without_a_ban_while_the_port_stays_active(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    qbittorrent_factory: QbittorrentFactory,
) -> None:
    """A wrong QBITTORRENT_PASS.

    the data file says auth_failed, the PIA port stays active, at most two logins are tried however
    many checks pass, qBittorrent bans nobody.
    """
    qbt = qbittorrent_factory()
    config = config_dir(shared_dir)
    env = daemon_env(
        pia_sim,
        shared_dir,
        config,
        PORT_FORWARD_REFRESH_INTERVAL="1",
        QBITTORRENT_HOST=qbt.url,
        QBITTORRENT_USER=qbt.user,
        QBITTORRENT_PASS="definitely-not-the-password",
        QBITTORRENT_CHECK_INTERVAL="1",
    )
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    eventually(
        lambda: (
            daemon.running()
            and (_data(config).get("qbittorrent") or {}).get("state") == "auth_failed"
        ),
        timeout=30,
    )
    binds = pia_sim.gateways[0].stats().binds_ok
    # Ten more keep-alives (and about as many qBittorrent checks) pass.
    eventually(lambda: pia_sim.gateways[0].stats().binds_ok >= binds + 10, timeout=60)
    data = _data(config)
    code = daemon.stop()
    log = daemon.log()
    assert ("active", "auth_failed") == (data["status"], data["qbittorrent"]["state"])
    assert "QBITTORRENT_PASS" in data["qbittorrent"]["error"]
    assert qbt.failed_logins() <= 2
    assert not qbt.banned()
    assert "definitely-not-the-password" not in log
    assert 0 == code, log

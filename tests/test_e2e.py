"""The whole product as users run it: `pia-mqtt once`/`run` with every peer real.

PIA is the HTTPS simulator, MQTT a real mosquitto, qBittorrent a real qbittorrent-nox,
gluetun the local look-alike of its control server, the hook a real script.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.simulator.pia import PiaSimulator
from tests.fake_gluetun import FakeGluetun
from tests.fixtures.common import eventually
from tests.fixtures.mosquitto import Broker, Recorder
from tests.fixtures.qbittorrent import QbittorrentProcess

if TYPE_CHECKING:
    from tests.fixtures.deluge import DelugeFactory
    from tests.fixtures.transmission import TransmissionFactory

HOOK = """#!/bin/sh
printf '%s %s %s\\n' "$1" "$PIA_PORT" "${PIA_OLD_PORT:-none}" >> "$(dirname "$0")/calls.txt"
"""


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYENV_ROOT")}
    return {**base, **extra}


def _once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "once"],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    """A hook script that appends `<arg> <PIA_PORT> <PIA_OLD_PORT>` to calls.txt."""
    folder = tmp_path / "hook"
    folder.mkdir()
    script = folder / "on-port.sh"
    script.write_text(HOOK)
    script.chmod(0o755)
    return script


@pytest.fixture
def daemon(pia_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `pia-mqtt run` processes; each is killed at the end if still running."""
    started: list[subprocess.Popen[str]] = []

    def start(**extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pia_mqtt", "run"],
            env=_env({**pia_env, **extra}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_once_leaves_qbittorrent_listening_on_the_forwarded_port(
    pia_env: dict[str, str], qbittorrent: QbittorrentProcess
) -> None:
    """`once` with qBittorrent configured: qBittorrent's own preferences show the port."""
    env = {
        **pia_env,
        "QBITTORRENT_HOST": qbittorrent.url,
        "QBITTORRENT_USER": qbittorrent.user,
        "QBITTORRENT_PASS": qbittorrent.password,
    }
    result = _once(env)
    port = int(Path(env["PORT_FILE"]).read_text())
    data = json.loads(Path(env["PORT_DATA_FILE"]).read_text())
    preferences = qbittorrent.preferences()
    assert 0 == result.returncode, result.stderr
    assert (port, False) == (preferences["listen_port"], preferences["random_port"])
    assert ("in_sync", port) == (data["qbittorrent"]["state"], data["qbittorrent"]["port"])
    assert "qbittorrent=in_sync" in result.stdout


@pytest.mark.netns
def test_once_leaves_qbittorrent_transmission_and_deluge_listening_on_the_port(
    pia_env: dict[str, str],
    qbittorrent: QbittorrentProcess,
    transmission_factory: TransmissionFactory,
    deluge_factory: DelugeFactory,
) -> None:
    """`once` with all three clients configured: each really listens on the forwarded port."""
    transmission = transmission_factory("3.00")
    deluge = deluge_factory("2.0.3", web_connected=False)
    env = {
        **pia_env,
        "QBITTORRENT_HOST": qbittorrent.url,
        "QBITTORRENT_USER": qbittorrent.user,
        "QBITTORRENT_PASS": qbittorrent.password,
        "TRANSMISSION_URL": transmission.url,
        "TRANSMISSION_USER": transmission.user,
        "TRANSMISSION_PASS": transmission.password,
        "DELUGE_URL": deluge.url,
        "DELUGE_PASS": deluge.password,
    }
    result = _once(env)
    assert 0 == result.returncode, result.stderr
    port = int(Path(env["PORT_FILE"]).read_text())
    data = json.loads(Path(env["PORT_DATA_FILE"]).read_text())
    assert port == qbittorrent.preferences()["listen_port"]
    assert port in transmission.ns.listening()
    assert port in deluge.ns.listening()
    for name in ("qbittorrent", "transmission", "deluge"):
        assert ("in_sync", port) == (data[name]["state"], data[name]["port"])
        assert f"{name}=in_sync" in result.stdout


def test_once_runs_the_hook_and_opens_gluetuns_firewall(
    pia_env: dict[str, str], hook: Path
) -> None:
    """`once` with PORT_CHANGE_COMMAND and GLUETUN_CONTROL_URL: both get the new port."""
    with FakeGluetun(api_key="e2e-gluetun-key-77") as gluetun:
        env = {
            **pia_env,
            "PORT_CHANGE_COMMAND": f"{hook} {{port}}",
            "GLUETUN_CONTROL_URL": gluetun.url,
            "GLUETUN_API_KEY": "e2e-gluetun-key-77",
        }
        result = _once(env)
        pushed = gluetun.held()
    port = int(Path(env["PORT_FILE"]).read_text())
    data = json.loads(Path(env["PORT_DATA_FILE"]).read_text())
    assert 0 == result.returncode, result.stderr
    assert f"{port} {port} none\n" == (hook.parent / "calls.txt").read_text()
    assert [port] == pushed
    assert "in_sync" == data["gluetun"]["state"]


def test_port_source_gluetun_distributes_the_port_gluetun_forwards(
    tmp_path: Path, hook: Path
) -> None:
    """PORT_SOURCE=gluetun: no PIA credentials; gluetun's port reaches files and the hook."""
    with FakeGluetun() as gluetun:
        gluetun.forward(43117)
        env = {
            "PORT_SOURCE": "gluetun",
            "GLUETUN_CONTROL_URL": gluetun.url,
            "PORT_CHANGE_COMMAND": f"{hook} {{port}}",
            "PORT_FILE": str(tmp_path / "pia-port.txt"),
            "PORT_DATA_FILE": str(tmp_path / "pia-port-data.json"),
            "STATE_FILE": str(tmp_path / "pia-lease.json"),
        }
        result = _once(env)
    data = json.loads((tmp_path / "pia-port-data.json").read_text())
    assert 0 == result.returncode, result.stderr
    assert "43117\n" == (tmp_path / "pia-port.txt").read_text()
    assert ("gluetun", "active") == (data["source"], data["status"])
    assert "43117 43117 none\n" == (hook.parent / "calls.txt").read_text()
    # No lease in gluetun mode: only the last published port, for the next restart.
    assert {"last_port": 43117} == json.loads((tmp_path / "pia-lease.json").read_text())


def test_port_source_gluetun_waits_while_gluetun_forwards_nothing(tmp_path: Path) -> None:
    """Port 0 from gluetun (VPN still starting) is never written: no files, exit 1."""
    with FakeGluetun() as gluetun:
        gluetun.forward()
        env = {
            "PORT_SOURCE": "gluetun",
            "GLUETUN_CONTROL_URL": gluetun.url,
            "PORT_FILE": str(tmp_path / "pia-port.txt"),
            "PORT_DATA_FILE": str(tmp_path / "pia-port-data.json"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "pia_mqtt", "run"],
            env=_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            eventually(lambda: "GET /v1/portforward" in gluetun.requests, timeout=20)
            gluetun.forward(51234)
            eventually((tmp_path / "pia-port.txt").exists, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert "51234\n" == (tmp_path / "pia-port.txt").read_text()


def test_mqtt_buttons_drive_the_daemon_and_sigterm_leaves_offline(
    pia_sim: PiaSimulator,
    mosquitto: Broker,
    recorder: Callable[..., Recorder],
    daemon: Callable[..., subprocess.Popen[str]],
    pia_env: dict[str, str],
) -> None:
    """MQTT buttons reach the daemon; SIGTERM leaves `offline` retained.

    Refresh -> one more bindPort on the simulator; New port -> a new port in the file and
    on MQTT.
    """
    rec = recorder(mosquitto, "pia-mqtt/#")
    proc = daemon(MQTT_HOST=mosquitto.host, MQTT_PORT=str(mosquitto.port))
    gateway = pia_sim.gateways[0]
    port_file = Path(pia_env["PORT_FILE"])
    first = rec.wait_for("pia-mqtt/port", timeout=30).text
    binds = gateway.stats().binds_ok

    rec.publish("pia-mqtt/refresh", "PRESS")
    eventually(lambda: gateway.stats().binds_ok == binds + 1, timeout=10)
    rec.publish("pia-mqtt/new_port", "PRESS")
    second = rec.wait_for("pia-mqtt/port", lambda m: m.text != first, timeout=10).text
    eventually(lambda: port_file.read_text() == f"{second}\n", timeout=10)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)

    availability = rec.wait_for("pia-mqtt/availability", lambda m: m.text == "offline")
    assert 0 == code
    assert str(gateway.stats().issued_ports[1]) == second
    assert "offline" == availability.text


def test_sigkill_leaves_the_last_will_and_a_restart_keeps_the_port(
    mosquitto: Broker,
    recorder: Callable[..., Recorder],
    daemon: Callable[..., subprocess.Popen[str]],
) -> None:
    """kill -9: the broker publishes the `offline` will; a restart is back with the port.

    The next start announces `online` and publishes the same port (saved signature).
    """
    rec = recorder(mosquitto, "pia-mqtt/#")
    mqtt = {"MQTT_HOST": mosquitto.host, "MQTT_PORT": str(mosquitto.port)}
    proc = daemon(**mqtt)
    port = rec.wait_for("pia-mqtt/port", timeout=30).text
    rec.wait_for("pia-mqtt/availability", lambda m: m.text == "online")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    rec.wait_for("pia-mqtt/availability", lambda m: m.text == "offline", timeout=120)

    rec.clear()
    daemon(**mqtt)
    rec.wait_for("pia-mqtt/availability", lambda m: m.text == "online", timeout=30)
    assert port == rec.wait_for("pia-mqtt/port", timeout=30).text

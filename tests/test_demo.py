"""``pia-mqtt demo`` and ``once`` as a new user meets them: real processes, real peers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pia_mqtt.simulator.pia import PiaSimulator
from tests.fixtures.mosquitto import Broker, Recorder
from tests.fixtures.qbittorrent import QbittorrentProcess

ROOT = Path(__file__).resolve().parent.parent


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYENV_ROOT")}
    return {**base, **extra}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", *args],
        env=_env(env or {}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--interval", "0"], "argument --interval: 0 is out of range: 1 to 900"),
        (["--interval", "1000"], "argument --interval: 1000 is out of range: 1 to 900"),
        (["--interval", "ten"], "argument --interval: 'ten' is not a whole number"),
        (["--duration", "0"], "argument --duration: 0 must be more than 0 seconds"),
        (["--dir", "/proc/nope"], "--dir /proc/nope: cannot use it for the demo's files"),
        (["--topic", "a/#"], "argument --topic: 'a/#' must be a plain topic without + or #"),
    ],
)
def test_bad_demo_flags_exit_2_with_a_clear_message(flags: list[str], message: str) -> None:
    """Each unusable flag is refused at once with exit 2 and one line, no traceback."""
    result = _cli("demo", "--duration", "2", *flags)
    assert (2, True, False) == (
        result.returncode,
        message in result.stderr,
        "Traceback" in result.stderr,
    ), result.stderr


def test_the_demo_says_each_keep_alive_and_where_the_files_are(tmp_path: Path) -> None:
    """At INFO each keep-alive is one line naming the files; DEBUG shows no schedule chatter."""
    result = _cli(
        "demo", "--dir", str(tmp_path), "--interval", "1", "--duration", "3.5",
        env={"LOG_LEVEL": "DEBUG"},
    )  # fmt: skip
    files = f"{tmp_path}/pia-port.txt and {tmp_path}/pia-port-data.json"
    keepalives = [line for line in result.stderr.splitlines() if "demo: keep-alive" in line]
    assert 0 == result.returncode, result.stderr
    assert len(keepalives) >= 2
    assert all(" INFO " in line and files in line for line in keepalives)
    assert "Running job" not in result.stderr


def test_the_demo_has_its_own_topic_and_leaves_nothing_on_the_broker(
    tmp_path: Path, mosquitto: Broker, recorder
) -> None:
    """Beside a real install's retained port, the demo uses pia-mqtt-demo/ and cleans it up."""
    real: Recorder = recorder(mosquitto)
    real.publish("pia-mqtt/port", "54321", retain=True)
    watch = recorder(mosquitto, "#")
    result = _cli(
        "demo", "--dir", str(tmp_path), "--interval", "1", "--duration", "3",
        env={"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(mosquitto.port)},
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    demo_topics = {m.topic for m in watch.messages if m.topic.startswith("pia-mqtt-demo/")}
    assert {"pia-mqtt-demo/port", "pia-mqtt-demo/availability"} <= demo_topics
    watch.wait_for("pia-mqtt-demo/availability", lambda m: m.payload == b"")
    fresh = recorder(mosquitto, "#")
    # The broker sends every retained message right after the SUBACK, before it handles
    # this later publish: once the ping is back, all retained messages are in.
    fresh.publish("test/ping", "ping")
    fresh.wait_for("test/ping")
    retained = {(m.topic, m.text) for m in fresh.messages if m.retain}
    assert {("pia-mqtt/port", "54321")} == retained  # the real install's, untouched


def test_the_demo_gives_qbittorrent_its_port_back(
    tmp_path: Path, qbittorrent: QbittorrentProcess
) -> None:
    """qBittorrent follows the demo's port while it runs and has its old port again after."""
    before = qbittorrent.preferences()["listen_port"]
    result = _cli(
        "demo", "--dir", str(tmp_path), "--interval", "1", "--duration", "3",
        env={"QBITTORRENT_HOST": qbittorrent.url, "QBITTORRENT_USER": qbittorrent.user,
             "QBITTORRENT_PASS": qbittorrent.password},
    )  # fmt: skip
    demo_port = int((tmp_path / "pia-port.txt").read_text())
    assert 0 == result.returncode, result.stderr
    assert f"qBittorrent's listening port set back to {before}" in result.stderr
    assert (before, True) == (qbittorrent.preferences()["listen_port"], demo_port != before)


def test_once_that_fails_says_it_is_not_retrying_and_shows_the_gateway(
    pia_env: dict[str, str], pia_sim: PiaSimulator
) -> None:
    """A refused token in `once`: no "retrying in 60 s" (it exits), and the found gateway shown."""
    result = _cli("once", env=pia_env | {"PIA_PASS": "wrong-password"})
    gateway = pia_sim.gateways[0].host
    assert 1 == result.returncode
    assert "retrying in" not in result.stderr
    assert "not retrying (once)" in result.stderr
    assert f"status=error gateway={gateway}" in result.stdout

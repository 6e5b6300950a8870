"""Configuration that used to crash (or pass check-config): exit 2 at once, one clear line.

Every case runs the real ``pia-mqtt run`` and ``pia-mqtt check-config``: both exit 2,
list exactly the same problems, name the variable, print no traceback, and never touch
the network (every address points at one listening socket that counts connections).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pia_mqtt import redact
from pia_mqtt.core.model import SyncState
from pia_mqtt.errors import ConfigError
from pia_mqtt.gluetun.client import GluetunClient, GluetunUnavailableError
from pia_mqtt.mqtt.sink import MqttSink
from pia_mqtt.settings import Settings, load_settings
from tests.faults.conftest import REPO
from tests.fixtures.common import RecordingInbox, eventually, free_port

Env = dict[str, str | bytes]


class Listener:
    """A TCP socket on 127.0.0.1 that accepts and counts connections (none expected)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        """Stop accepting and close the socket."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """The one address every peer setting points at."""
    server = Listener()
    yield server
    server.close()


def _base(folder: Path, listener: Listener) -> Env:
    port = str(listener.port)
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": str(folder),
        "PIA_USER": "p1234567",
        "PIA_PASS": "hunter2-pia-secret",
        "PIA_GATEWAY": "127.0.0.1",
        "PIA_GATEWAY_PORT": port,
        "PIA_TOKEN_URL": f"https://127.0.0.1:{port}/api/client/v2/token",
        "PORT_FILE": str(folder / "pia-port.txt"),
        "PORT_DATA_FILE": str(folder / "pia-port-data.json"),
        "STATE_FILE": str(folder / "pia-lease.json"),
    }


def _cli(command: str, env: Env) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", command],
        env=env,  # type: ignore[arg-type]  # bytes values are passed as they are
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        check=False,
    )


def _problems(stderr: str) -> list[str]:
    return [line.strip()[2:] for line in stderr.splitlines() if line.startswith("  - ")]


def _file(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


CASES: dict[str, tuple[str, object]] = {
    # name: (variable the message must name, extra env or a function of the folder)
    "pia-ca-without-certificate": (
        "PIA_CA_CERT",
        lambda d: {"PIA_CA_CERT": _file(d, "ca.crt", b"not a certificate\n")},
    ),
    "mqtt-ca-without-certificate": (
        "MQTT_CA_CERT",
        lambda d: {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_TLS": "true",
            "MQTT_CA_CERT": _file(d, "mqtt-ca.crt", b""),
        },
    ),
    "pia-hostname-empty-label": ("PIA_HOSTNAME", {"PIA_HOSTNAME": "milano..402"}),
    "mqtt-host-empty-label": ("MQTT_HOST", {"MQTT_HOST": "broker..lan"}),
    "pia-user-not-utf8": ("PIA_USER", {"PIA_USER": b"p12\xff4567"}),
    "pia-pass-not-utf8": ("PIA_PASS", {"PIA_PASS": b"hunter\xff\xfe2"}),
    "mqtt-topic-not-utf8": ("MQTT_TOPIC", {"MQTT_HOST": "127.0.0.1", "MQTT_TOPIC": b"pia\xff"}),
    "secret-file-not-utf8": (
        "PIA_PASS_FILE",
        lambda d: {"PIA_PASS": "", "PIA_PASS_FILE": _file(d, "pass", b"\xff\xfehunter2\n")},
    ),
    "port-file-is-state-file": (
        "PORT_FILE and STATE_FILE",
        lambda d: {"PORT_FILE": str(d / "pia-lease.json")},
    ),
    "data-file-is-port-file": (
        "PORT_FILE and PORT_DATA_FILE",
        lambda d: {"PORT_DATA_FILE": str(d / "pia-port.txt")},
    ),
    "command-run-refuses": ("PORT_CHANGE_COMMAND", {"PORT_CHANGE_COMMAND": 'echo "unterminated'}),
    "command-blank": ("PORT_CHANGE_COMMAND", {"PORT_CHANGE_COMMAND": "   "}),
    "url-not-parsing": ("GLUETUN_CONTROL_URL", {"GLUETUN_CONTROL_URL": "http://[::1"}),
    "url-port-out-of-range": ("QBITTORRENT_HOST", {"QBITTORRENT_HOST": "http://qbt:99999"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_exits_2_in_run_and_check_config_alike(
    case: str, tmp_path: Path, listener: Listener
) -> None:
    """`run` and `check-config` both exit 2 listing the same problems, naming the variable.

    No traceback, no connection to any peer address, no secret in the output.
    """
    variable, extra = CASES[case]
    env = _base(tmp_path, listener)
    env |= extra(tmp_path) if callable(extra) else extra  # type: ignore[operator]
    run = _cli("run", env)
    check = _cli("check-config", env)
    for result in (run, check):
        assert 2 == result.returncode, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert "hunter" not in result.stderr + result.stdout
    assert _problems(run.stderr) == _problems(check.stderr)
    assert any(p.startswith(variable) for p in _problems(run.stderr)), run.stderr
    assert 0 == listener.connections


def test_check_config_lists_missing_credentials_beside_field_errors(
    tmp_path: Path, listener: Listener
) -> None:
    """Three field errors and no PIA_USER/PIA_PASS: check-config lists all five, as run does."""
    env = _base(tmp_path, listener)
    del env["PIA_USER"], env["PIA_PASS"]
    env |= {"MQTT_PORT": "x", "LOG_LEVEL": "verbose", "PORT_FORWARD_REFRESH_INTERVAL": "abc"}
    run, check = _cli("run", env), _cli("check-config", env)
    assert 5 == len(_problems(run.stderr)), run.stderr
    assert _problems(run.stderr) == _problems(check.stderr)
    assert (2, 2) == (run.returncode, check.returncode)


def test_check_config_shows_derived_values_not_null(tmp_path: Path, listener: Listener) -> None:
    """MQTT_CLIENT_ID and, in gluetun mode, GLUETUN_CONTROL_URL show what will be used."""
    env = _base(tmp_path, listener) | {"MQTT_HOST": "127.0.0.1", "PORT_SOURCE": "gluetun"}
    result = _cli("check-config", env)
    shown = json.loads(result.stdout)
    assert 0 == result.returncode, result.stderr
    assert ("pia-mqtt", "http://127.0.0.1:8000") == (
        shown["MQTT_CLIENT_ID"],
        shown["GLUETUN_CONTROL_URL"],
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from the host; secrets registered here stay here."""
    for key in list(os.environ):
        if key.lower() in Settings.model_fields:
            monkeypatch.delenv(key)
    monkeypatch.setattr(redact, "_known", set())
    return monkeypatch


def test_a_secret_files_bom_and_trailing_newline_are_stripped(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """A secret file saved by an editor (UTF-8 BOM, CRLF) gives the bare secret."""
    clean_env.setenv("PIA_USER", "p1234567")
    clean_env.setenv("PIA_PASS_FILE", _file(tmp_path, "pass", b"\xef\xbb\xbfhunter2-pia\r\n"))
    assert "hunter2-pia" == load_settings().secret("pia_pass")


@pytest.mark.parametrize(
    ("variable", "value", "example"),
    [
        ("GLUETUN_CONTROL_URL", "ftp://x", "http://gluetun:8000"),
        ("QBITTORRENT_HOST", "ftp://x", "http://qbittorrent:8080"),
        ("PIA_TOKEN_URL", "ftp://x", "https://www.privateinternetaccess.com/api/client/v2/token"),
    ],
)
def test_each_url_variable_gets_its_own_example(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, example: str
) -> None:
    """GLUETUN_CONTROL_URL=ftp://x is not answered with qBittorrent's example."""
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(require_credentials=False)
    assert [f"{variable}: must be an http:// or https:// URL such as {example}"] == (
        caught.value.problems
    )


def test_a_bad_log_level_lists_the_levels_not_a_regex(clean_env: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL=verbose names the accepted levels in words."""
    clean_env.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError) as caught:
        load_settings(require_credentials=False)
    assert [
        "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'verbose')"
    ] == caught.value.problems


def test_an_unreachable_peer_is_one_short_line() -> None:
    """urllib3's long text (pool, object address, retries) is translated to its cause."""
    client = GluetunClient(f"http://127.0.0.1:{free_port()}", api_key=None, timeout=2.0)
    with pytest.raises(GluetunUnavailableError) as caught:
        client.forwarded_ports()
    message = str(caught.value)
    assert "(connection refused)" in message
    assert "HTTPConnection" not in message
    assert "Max retries" not in message


def test_mqtt_connection_setup_failure_is_reported_and_retried_not_a_dead_thread() -> None:
    """A host paho cannot even encode (settings refuse it; here it is forced in).

    paho's network thread stays alive, the failure is reported as MQTT's health, and
    the connect is retried.
    """
    inbox = RecordingInbox()
    sink = MqttSink(
        Settings(mqtt_host="broker..lan", mqtt_port=1883),
        inbox,
        qbittorrent_enabled=False,
        version="test",
    )
    sink.start()
    try:
        eventually(lambda: (inbox.last_health() or None) is not None, timeout=10)
        health = inbox.last_health()
        thread = sink._client._thread
        assert SyncState.UNREACHABLE == health.state
        assert thread is not None
        assert thread.is_alive()
    finally:
        sink.close()

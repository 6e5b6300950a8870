"""Security: the whole product with distinctive secrets, and TLS that cannot be turned off.

`pia-mqtt run` talks to every peer for real (PIA simulator over HTTPS, mosquitto with a
password, qbittorrent-nox with a password, a hook that prints its environment, gluetun's
control server with an API key) at LOG_LEVEL=DEBUG, through a few forced error paths.
Then every log line, every readable file, every MQTT message (subscribed to '#') and
every exception text is searched for the secrets, the PIA token, payload and signature.
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import PiaMqttError
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import parse_signature_reply
from pia_mqtt.simulator.pia import (
    BAD_SIGNATURE,
    SERVER_ERROR,
    WRONG_CREDENTIALS,
    PiaSimulator,
    Reply,
)
from tests.fake_gluetun import FakeGluetun
from tests.faults.conftest import Daemon, base_env, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually, free_port
from tests.fixtures.mosquitto import PASSWORD as MQTT_PASSWORD
from tests.fixtures.mosquitto import USERNAME as MQTT_USER
from tests.fixtures.mosquitto import Broker, Recorder
from tests.fixtures.qbittorrent import QbittorrentFactory

pytestmark = pytest.mark.timeout(150)

PIA_USER = "p5550123"
PIA_PASSWORD = "Pia-Distinct-Pass-5x9Q"
GLUETUN_KEY = "Gluetun-Distinct-Key-77Hd"


def _hook(shared: Path) -> Path:
    script = shared / "hook.sh"
    # Prints its whole environment and arguments, then fails, so the output becomes a
    # hook_failed event on MQTT: every secret the daemon knows must be masked in it.
    script.write_text('#!/bin/sh\nenv\necho "args: $*"\nexit 3\n')
    script.chmod(0o755)
    return script


def test_no_secret_reaches_logs_files_mqtt_or_exceptions(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    mosquitto_auth: Broker,
    recorder: Callable[..., Recorder],
    qbittorrent_factory: QbittorrentFactory,
) -> None:
    """No secret reaches DEBUG logs, readable files, MQTT messages or exception texts.

    DEBUG logs, the port files, every MQTT message and exception texts hold none of the
    PIA/qBittorrent/MQTT passwords, the gluetun API key, the token, payload or signature; the state
    file (the one place holding the signature) is mode 0600.
    """
    pia_sim.users[PIA_USER] = PIA_PASSWORD
    qbt = qbittorrent_factory()
    config = config_dir(shared_dir, owner=None)
    qbt_pass_file = shared_dir / "qbt-pass"
    qbt_pass_file.write_text(qbt.password)
    watcher = recorder(mosquitto_auth, "#")
    gateway = pia_sim.gateways[0]
    # Forced error paths: the first token request fails (500), the first keep-alive too.
    pia_sim.token_endpoint.fail_next(SERVER_ERROR)
    with FakeGluetun(api_key=GLUETUN_KEY) as gluetun:
        env = daemon_env(
            pia_sim,
            shared_dir,
            config,
            PIA_USER=PIA_USER,
            PIA_PASS=PIA_PASSWORD,
            LOG_LEVEL="DEBUG",
            PORT_FORWARD_REFRESH_INTERVAL="2",
            MQTT_HOST=mosquitto_auth.host,
            MQTT_PORT=str(mosquitto_auth.port),
            MQTT_USER=MQTT_USER,
            MQTT_PASS=MQTT_PASSWORD,
            QBITTORRENT_HOST=qbt.url,
            QBITTORRENT_USER=qbt.user,
            QBITTORRENT_PASS_FILE=str(qbt_pass_file),
            QBITTORRENT_CHECK_INTERVAL="1",
            GLUETUN_CONTROL_URL=gluetun.url,
            GLUETUN_API_KEY=GLUETUN_KEY,
            PORT_CHANGE_COMMAND=f"{_hook(shared_dir)} {{port}}",
            HTTP_PORT=str(http_port := free_port()),
            HTTP_ADDRESS="127.0.0.1",
        )
        daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
        daemons.append(daemon)
        watcher.wait_for("pia-mqtt/status", lambda m: m.text == "active", timeout=30)
        port = int(watcher.wait_for("pia-mqtt/port").text)
        gateway.fail_next(SERVER_ERROR)
        eventually(lambda: daemon.running() and gluetun.held() == [port], timeout=30)
        eventually(lambda: qbt.preferences()["listen_port"] == port, timeout=30)
        eventually(lambda: any(b'"hook_failed"' in m.payload for m in watcher.messages))
        eventually(lambda: gateway.stats().binds_failed >= 1 and gateway.stats().binds_ok >= 3)
        pages = {
            f"http {path}": urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}").read()
            for path in ("/", "/status", "/metrics")
        }
        code = daemon.stop()
    issued = gateway.stats().issued_ports
    state_file = config / "pia-lease.json"
    reply = json.loads(json.loads(state_file.read_text())["reply"])
    token = json.loads(base64.b64decode(reply["payload"]))["token"]
    secrets = {
        "PIA password": PIA_PASSWORD,
        "qBittorrent password": qbt.password,
        "MQTT password": MQTT_PASSWORD,
        "gluetun API key": GLUETUN_KEY,
        "token": token,
        "payload": reply["payload"],
        "signature": reply["signature"],
    }
    texts = {"log": daemon.log()}
    texts |= {f"file {p.name}": p.read_text() for p in config.iterdir() if p != state_file}
    texts |= {f"mqtt {m.topic}": f"{m.topic} {m.payload!r} {m.text}" for m in watcher.messages}
    texts |= {where: body.decode() for where, body in pages.items()}
    exception_texts, echoed = _exception_texts(pia_sim)
    secrets |= echoed
    texts |= {f"exception {i}": text for i, text in enumerate(exception_texts)}
    leaks = [(what, where) for what, s in secrets.items() for where, t in texts.items() if s in t]
    assert 0 == code, daemon.log()
    assert 1 == len(issued)  # one lease: the secrets above are all of them
    assert "DEBUG" in texts["log"]
    assert "HTTP 500" in texts["log"]  # the forced error paths were taken
    assert any(w.startswith("mqtt pia-mqtt/events") for w in texts)
    assert f'id="port">{port}<' in texts["http /"]  # the status page was really read
    assert [] == leaks
    assert 0o600 == stat.S_IMODE(state_file.stat().st_mode)


def _exception_texts(sim: PiaSimulator) -> tuple[list[str], dict[str, str]]:
    """Error texts of the PIA client's failure paths, and the lease secrets they could hold.

    Error texts of the PIA client's failure paths (a gateway even echoes the payload and signature
    back in its error message), and the lease secrets they could contain.
    """
    gateway = sim.gateways[0]
    target = GatewayTarget(address=gateway.host, hostname=gateway.cn)
    client = PiaClient(
        username=PIA_USER,
        password=PIA_PASSWORD,
        token_url=sim.token_url + "?password=" + PIA_PASSWORD,
        ca_file=sim.ca_file,
        gateway_port=gateway.port,
        timeout=2,
    )
    token = sim.new_token()
    lease = parse_signature_reply(gateway.issue_signature(token))
    secret_echo = Reply(500, json.dumps({"message": f"{lease.signature} {lease.payload}"}))
    steps: list[tuple[object, Callable[[], object]]] = [
        (sim.token_endpoint, client.get_token),
        (gateway, lambda: client.bind(target, lease)),
        (gateway, lambda: client.get_signature(target, token)),
    ]
    texts = []
    try:
        for fault in (WRONG_CREDENTIALS, BAD_SIGNATURE, SERVER_ERROR, secret_echo):
            for endpoint, call in steps:
                endpoint.fail_next(fault)  # type: ignore[attr-defined]
                try:
                    call()
                except PiaMqttError as exc:
                    texts += [str(exc), repr(exc)]
    finally:
        client.close()
    echoed = {"echoed payload": lease.payload, "echoed signature": lease.signature}
    return [*texts, repr(lease)], echoed


def test_gateway_tls_verification_cannot_be_turned_off_by_any_setting(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """No setting turns off the gateway's TLS verification: a rogue gateway is refused.

    A rogue gateway (certificate from another CA, the expected name) with every variable that could
    plausibly weaken TLS set: the bundle variables trust the rogue CA, PYTHONHTTPSVERIFY=0,
    PIA_CA_CERT points at yet another CA. `pia-mqtt once` refuses it: exit 1, no request reaches
    it, no file written, the error says certificate.
    """
    rogue_dir = tmp_path / "rogue"
    with PiaSimulator(rogue_dir) as rogue_sim:
        rogue = rogue_sim.add_gateway(port=free_port(), cn="rogue-gw")
        bundle = tmp_path / "bundle.pem"
        bundle.write_text(
            rogue_sim.ca_file.read_text()
            + rogue_sim.token_ca_file.read_text()
            + pia_sim.token_ca_file.read_text()
        )
        out = tmp_path / "out"
        env = base_env(
            {
                "PIA_USER": "p1234567",
                "PIA_PASS": "sim-password",
                "PIA_TOKEN_URL": pia_sim.token_url,
                "PIA_GATEWAY": rogue.host,
                "PIA_GATEWAY_PORT": str(rogue.port),
                "PIA_HOSTNAME": "rogue-gw",
                # The token endpoint's CA: a real CA, but not the gateway's.
                "PIA_CA_CERT": str(pia_sim.token_ca_file),
                "REQUESTS_CA_BUNDLE": str(bundle),
                "CURL_CA_BUNDLE": str(bundle),
                "SSL_CERT_FILE": str(bundle),
                "SSL_CERT_DIR": str(tmp_path),
                "PYTHONHTTPSVERIFY": "0",
                "PIA_VERIFY": "false",
                "PIA_TLS_VERIFY": "0",
                "PIA_INSECURE": "1",
                "PORT_FILE": str(out / "pia-port.txt"),
                "PORT_DATA_FILE": str(out / "pia-port-data.json"),
                "STATE_FILE": str(out / "pia-lease.json"),
            }
        )
        once = subprocess.run(
            [sys.executable, "-m", "pia_mqtt", "once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        detect = subprocess.run(
            [sys.executable, "-m", "pia_mqtt", "detect-gateway"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        seen = rogue.stats()
    output = once.stdout + once.stderr
    assert (1, 1) == (once.returncode, detect.returncode), output
    assert (0, 0, 0) == (seen.signature_requests, seen.binds_ok, seen.binds_failed)
    assert seen.connections > 0  # it was contacted, and refused at the handshake
    assert "certificate" in output.lower()
    assert "certificate" in detect.stdout.lower()
    assert not out.exists() or [] == sorted(p.name for p in out.iterdir())

"""Whole daemons against each gluetun behaviour: `pia-mqtt run` as users run it.

PIA is the HTTPS simulator, gluetun the look-alike of tests/fake_gluetun.py (tagged
release, development build whose provider forwards itself, custom provider), qBittorrent a
real qbittorrent-nox, MQTT a real mosquitto, the hook a script that records its reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pia_mqtt.core.engine import utc_now
from pia_mqtt.gateway.tables import Route
from pia_mqtt.gluetun.client import GluetunClient
from pia_mqtt.gluetun.push import GluetunPushSink
from pia_mqtt.simulator.pia import PiaSimulator
from pia_mqtt.sinks.hook import HookSink
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.sink import TorrentSink
from tests.fake_gluetun import (
    GET_PF,
    NO_PUT_ROUTE,
    PROVIDER_FORWARDS,
    PUT_PF,
    Behaviour,
    FakeGluetun,
)
from tests.fixtures.common import eventually
from tests.fixtures.mosquitto import Broker, Recorder
from tests.fixtures.qbittorrent import PASSWORD, USER, QbittorrentProcess
from tests.harness import advance, at, build_daemon

KEY = "e2e-gluetun-role-key-41"
HOOK = """#!/bin/sh
printf '%s %s %s\\n' "$PIA_PORT_REASON" "$PIA_PORT" "${PIA_OLD_PORT:-none}" >> "$0.calls"
"""


class Daemon:
    """One `pia-mqtt run` process, its log in a file."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.log_path = folder / "daemon.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pia_mqtt", "run"],
            env={**base, **env},
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def log(self) -> str:
        """Everything logged so far."""
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM, wait, return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self._log.close()
        return code


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Daemon]]:
    """Start daemons; each is stopped at the end."""
    started: list[Daemon] = []

    def start(env: dict[str, str]) -> Daemon:
        run = Daemon(env, tmp_path)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
        run.stop()


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    """A hook script that appends `<reason> <PIA_PORT> <PIA_OLD_PORT>` to <script>.calls."""
    script = tmp_path / "on-port.sh"
    script.write_text(HOOK)
    script.chmod(0o755)
    return script


def calls(hook: Path) -> list[str]:
    """The hook's runs so far."""
    path = Path(f"{hook}.calls")
    return path.read_text().splitlines() if path.exists() else []


def data(env: dict[str, str]) -> dict[str, Any]:
    """The data file (PORT_DATA_FILE), or {} while it does not exist."""
    path = Path(env["PORT_DATA_FILE"])
    if not path.exists():
        return {}
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def health(env: dict[str, str], name: str) -> dict[str, Any]:
    """A sink's entry in the data file ({} while there is none)."""
    entry: dict[str, Any] = data(env).get(name) or {}
    return entry


def first_lines(run: Daemon, count: int = 8) -> list[str]:
    """The first lines of the daemon's log."""
    return run.log().splitlines()[:count]


def test_follow_mode_rides_out_a_tunnel_restart_and_reapplies_to_qbittorrent_and_the_hook(
    tmp_path: Path,
    qbittorrent: QbittorrentProcess,
    hook: Path,
    daemon: Callable[[dict[str, str]], Daemon],
) -> None:
    """PORT_SOURCE=gluetun through two tunnel restarts: never port 0, last port kept.

    Same port back: the hook runs with `reapplied` and qBittorrent listens on it again
    (its port was moved meanwhile; only the re-apply brings it back, drift checks are
    hours apart). New port back: `changed`.
    """
    with FakeGluetun(
        Behaviour.DEV_SELF_FORWARDING, api_key=KEY, key_routes=frozenset({GET_PF})
    ) as gluetun:
        gluetun.forward(43117)
        env = {
            "PORT_SOURCE": "gluetun",
            "GLUETUN_CONTROL_URL": gluetun.url,
            "GLUETUN_API_KEY": KEY,
            "GLUETUN_CHECK_INTERVAL": "0.3",
            "QBITTORRENT_HOST": qbittorrent.url,
            "QBITTORRENT_USER": qbittorrent.user,
            "QBITTORRENT_PASS": qbittorrent.password,
            "QBITTORRENT_CHECK_INTERVAL": "3600",
            "PORT_CHANGE_COMMAND": str(hook),
            "PORT_FILE": str(tmp_path / "pia-port.txt"),
            "PORT_DATA_FILE": str(tmp_path / "pia-port-data.json"),
            "STATE_FILE": str(tmp_path / "pia-lease.json"),
        }
        run = daemon(env)
        eventually(lambda: health(env, "qbittorrent").get("state") == "in_sync", timeout=30)
        eventually(lambda: calls(hook) == ["start 43117 none"], timeout=10)

        qbittorrent.set_preferences({"listen_port": 40999})  # its socket is gone meanwhile
        gluetun.restart_tunnel()
        during = eventually(
            lambda: (d := data(env)) and d["status"] == "acquiring" and d, timeout=10
        )
        port_file_during = Path(env["PORT_FILE"]).read_text()
        gluetun.forward(43117)
        eventually(lambda: calls(hook)[-1:] == ["reapplied 43117 43117"], timeout=10)
        eventually(lambda: qbittorrent.preferences()["listen_port"] == 43117, timeout=10)

        gluetun.restart_tunnel()
        eventually(lambda: data(env)["status"] == "acquiring", timeout=10)
        gluetun.forward(51000)
        eventually(lambda: calls(hook)[-1:] == ["changed 51000 43117"], timeout=10)
        eventually(lambda: qbittorrent.preferences()["listen_port"] == 51000, timeout=10)
        final = eventually(lambda: (d := data(env))["status"] == "active" and d, timeout=10)
        code = run.stop()
    assert 0 == code
    assert (during["port"], during["gluetun"]["state"], during["gluetun"]["port"]) == (
        43117,
        "reconnecting",
        43117,
    )
    assert "43117\n" == port_file_during
    assert calls(hook) == ["start 43117 none", "reapplied 43117 43117", "changed 51000 43117"]
    assert (final["port"], final["gluetun"]["state"]) == (51000, "in_sync")


def test_push_to_a_tagged_release_is_refused_in_the_first_lines_log_state_and_event(
    pia_env: dict[str, str],
    mosquitto: Broker,
    recorder: Callable[..., Recorder],
    daemon: Callable[[dict[str, str]], Daemon],
) -> None:
    """PIA mode, gluetun v3.41.x: 400 classified by the first PUT, reported once, with fix.

    The log's first lines, the data file's and MQTT state's gluetun entry (`refused`) and
    one `gluetun_failed` event say it; PUTs stay within one per GLUETUN_CHECK_INTERVAL.
    """
    rec = recorder(mosquitto, "pia-mqtt/#")
    with FakeGluetun(Behaviour.TAGGED, api_key=KEY) as gluetun:
        env = {
            **pia_env,
            "GLUETUN_CONTROL_URL": gluetun.url,
            "GLUETUN_API_KEY": KEY,
            "GLUETUN_CHECK_INTERVAL": "1",
            "MQTT_HOST": mosquitto.host,
            "MQTT_PORT": str(mosquitto.port),
        }
        run = daemon(env)
        state = rec.wait_for(
            "pia-mqtt/state",
            lambda m: (json.loads(m.text).get("gluetun") or {}).get("state") == "refused",
            timeout=30,
        )
        event = rec.wait_for(
            "pia-mqtt/events", lambda m: json.loads(m.text)["event"] == "gluetun_failed"
        )
        checks_before = gluetun.count(GET_PF)
        eventually(lambda: gluetun.count(GET_PF) >= checks_before + 3, timeout=10)
        puts, gets = gluetun.count(PUT_PF), gluetun.count(GET_PF)
        run.stop()
    error = (
        f"gluetun's control server at {gluetun.url} refused PUT /v1/portforward (HTTP 400: "
        f"method PUT not supported): {NO_PUT_ROUTE}"
    )
    entry = json.loads(state.text)["gluetun"]
    assert (entry["state"], entry["error"]) == ("refused", error)
    assert json.loads(event.text)["message"] == error
    assert data(env)["gluetun"]["state"] == "refused"
    assert any(line.endswith(error) for line in first_lines(run))
    assert run.log().count(error) == 1
    kinds = [json.loads(m.text)["event"] for m in rec.on("pia-mqtt/events")]
    assert kinds.count("gluetun_failed") == 1
    # The first PUT, then at most one per check (each check is one GET).
    assert puts <= 1 + gets


def test_push_to_a_dev_build_whose_provider_forwards_itself_is_refused_with_its_fix(
    pia_env: dict[str, str], daemon: Callable[[dict[str, str]], Daemon]
) -> None:
    """PIA mode, gluetun :latest with its PIA provider: 500 classified as a refusal."""
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as gluetun:
        env = {**pia_env, "GLUETUN_CONTROL_URL": gluetun.url, "GLUETUN_CHECK_INTERVAL": "1"}
        run = daemon(env)
        entry = eventually(lambda: health(env, "gluetun").get("error"), timeout=30)
        run.stop()
    error = (
        f"gluetun's control server at {gluetun.url} refused PUT /v1/portforward (HTTP 500: "
        f"failed setting forwarded ports): {PROVIDER_FORWARDS}"
    )
    assert (data(env)["gluetun"]["state"], entry) == ("refused", error)
    assert any(line.endswith(error) for line in first_lines(run))
    assert gluetun.held() == []


def test_push_to_a_custom_provider_opens_the_port_and_again_after_a_tunnel_restart(
    pia_env: dict[str, str],
    qbittorrent: QbittorrentProcess,
    hook: Path,
    daemon: Callable[[dict[str, str]], Daemon],
) -> None:
    """custom: the first PUT is accepted, and said in the first lines.

    A tunnel restart makes gluetun forget the port and the next check PUTs it again;
    qBittorrent stays on it.
    """
    with FakeGluetun(Behaviour.CUSTOM, api_key=KEY) as gluetun:
        env = {
            **pia_env,
            "GLUETUN_CONTROL_URL": gluetun.url,
            "GLUETUN_API_KEY": KEY,
            "GLUETUN_CHECK_INTERVAL": "0.5",
            "QBITTORRENT_HOST": qbittorrent.url,
            "QBITTORRENT_USER": qbittorrent.user,
            "QBITTORRENT_PASS": qbittorrent.password,
            "PORT_CHANGE_COMMAND": str(hook),
        }
        run = daemon(env)
        entry = eventually(
            lambda: (d := health(env, "gluetun")).get("state") == "in_sync" and d, timeout=30
        )
        port = entry["port"]
        assert gluetun.held() == [port]
        gluetun.restart_tunnel()
        eventually(lambda: gluetun.held() == [port], timeout=10)
        eventually(lambda: qbittorrent.preferences()["listen_port"] == port, timeout=10)
        run.stop()
    assert gluetun.pushes == [[port], [port]]
    assert any(
        line.endswith(
            f"gluetun at {gluetun.url} accepts PUT /v1/portforward (its provider does "
            "not forward by itself)"
        )
        for line in first_lines(run)
    )
    assert (
        f"gluetun opened port {port} in its firewall (gluetun held no port (its tunnel "
        "restarted?))" in run.log()
    )
    assert calls(hook) == [f"start {port} none"]


def test_push_mode_vpn_reconnect_reapplies_and_gluetun_gets_the_port_at_once(
    pia_sim: PiaSimulator,
    qbittorrent: QbittorrentProcess,
    hook: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PIA mode with a custom-provider gluetun: its tunnel restarts (routes change).

    The engine re-applies the port: the hook runs with `reapplied`, qBittorrent listens on
    it again, and gluetun, which forgot the port with its tunnel, gets it back at once
    instead of at the next check (an hour away here).
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    routes: list[Route] = []
    with FakeGluetun(Behaviour.CUSTOM) as gluetun, at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=5)
        engine = daemon.engine
        push = GluetunPushSink(
            GluetunClient(gluetun.url, api_key=None), engine, check_interval=3600, clock=utc_now
        )
        torrent = TorrentSink(
            QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD),
            engine,
            clock=utc_now,
            check_interval=3600,
        )
        hooks = HookSink(str(hook), engine, clock=utc_now, timeout=10)
        engine.attach(daemon.manager, [*engine.sinks, push, torrent, hooks])
        daemon.manager._finder._read_system = lambda: (list(routes), [])  # type: ignore[attr-defined]
        # The way to the gateway follows the fake table (a tunnel made again: new interface).
        daemon.manager._finder.path = lambda _gw: f"10.9.0.2 ifindex {len(routes)}"  # type: ignore[attr-defined]
        daemon.engine.start()
        advance(daemon.engine, traveller, 6)
        for sink in (push, torrent, hooks):
            assert sink.drain(15)
        port = daemon.engine.snapshot.port
        qbittorrent.set_preferences({"listen_port": 40999})  # the socket is gone
        gluetun.restart_tunnel()
        routes.append(Route(dest="0.0.0.0", prefix=0, gateway="10.9.0.1", dev="tun0"))
        advance(daemon.engine, traveller, 6)
        for sink in (push, torrent, hooks):
            assert sink.drain(15)
        held = gluetun.held()
        daemon.engine.close()
    assert port is not None
    assert held == [port]
    assert gluetun.pushes == [[port], [port]]
    assert qbittorrent.preferences()["listen_port"] == port
    assert calls(hook) == [f"start {port} none", f"reapplied {port} {port}"]

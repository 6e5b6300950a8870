"""VPN move: the VPN reconnects to another server; time until the port is everywhere again.

The network is the one ``tests/test_netns.py`` builds for its gateway-move test, made by
``tests.netns.NetLab`` (namespaces and veth pairs that exist only on this machine, removed
afterwards): a client namespace joined to two gateway namespaces (10.74.0.1 and 10.75.0.1,
each running a simulator gateway on port 19999). Everything the daemon talks to besides
the gateways (token endpoint, mosquitto, qbittorrent-nox) runs inside the client
namespace, on its own loopback, driven by this module's :func:`main` which also performs
the moves (address and default route switched from one gateway to the other) and times
them. Route events (rtnetlink) wake the daemon; the clock starts before the first ``ip``
command of the move, so the figure includes the three ``ip`` runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.observe import BenchError, MqttWatch, Poller, read_json, wait_all

SIDES = (("net1", "10.74.0.2/24", "10.74.0.1"), ("net2", "10.75.0.2/24", "10.75.0.1"))


def gateway_moves(material: Path, folder: Path, moves: int, *, foreign: bool) -> list[float]:
    """Build the namespaces, run :func:`main` in the client one; seconds per move."""
    from tests.netns import NetLab, remove_stale_namespaces  # noqa: PLC0415

    remove_stale_namespaces()
    sim_dir = folder / "sim"
    shutil.copytree(material, sim_dir, ignore=shutil.ignore_patterns("servers"))
    lab = NetLab("bench")
    try:
        client = lab.namespace("cl")
        flags = "" if foreign else ":noforeign"
        for index, (client_if, _, gateway) in enumerate(SIDES):
            gw = lab.namespace(f"gw{index}")
            lab.veth(gw, "gw0", client, client_if)
            gw.ip("addr", "add", f"{gateway}/24", "dev", "gw0")
            started = lab.start(
                gw, f"gateway {gateway}",
                [sys.executable, "-m", "pia_mqtt.simulator", "--dir", str(sim_dir),
                 "--no-token", "--gateway", f"{gateway}:19999:gw-{index}{flags}"],
            )  # fmt: skip
            json.loads(started.readline(timeout=30))
        client.ip("addr", "add", SIDES[0][1], "dev", SIDES[0][0])
        client.ip("route", "add", "default", "via", SIDES[0][2])
        inner = lab.start(
            client, "move driver",
            [sys.executable, "-m", "benchmarks.netmove", "--sim-dir", str(sim_dir),
             "--folder", str(folder), "--moves", str(moves)],
        )  # fmt: skip
        line = inner.readline(timeout=60 + 20 * moves)
        while not line.startswith("{"):
            line = inner.readline(timeout=60 + 20 * moves)
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise BenchError(f"gateway move: {result['error']}\n{inner.text()[-3000:]}")
        return [float(x) for x in result["seconds"]]
    finally:
        lab.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _move(to: int) -> None:
    """Switch the client's address and default route to side ``to`` (inside the namespace)."""
    old_if, old_addr, _ = SIDES[1 - to]
    new_if, new_addr, new_gw = SIDES[to]
    _ip("addr", "del", old_addr, "dev", old_if)
    _ip("addr", "add", new_addr, "dev", new_if)
    _ip("route", "replace", "default", "via", new_gw)


def _everywhere(
    folder: Path, watch: MqttWatch, qbt_port: Any, gateway: str, old_port: int | None
) -> tuple[list[Poller], list[Any], dict[str, int]]:
    known: dict[str, int] = {}

    def files() -> bool:
        data = read_json(folder / "pia-port-data.json")
        if data is None or (data["gateway"], data["status"]) != (gateway, "active"):
            return False
        known["port"] = data["port"]
        return (folder / "pia-port.txt").read_text() == f"{data['port']}\n"

    def state(message: Any) -> bool:
        if message.topic != f"{watch.topic}/state" or not message.payload:
            return False
        doc = json.loads(message.payload)
        return (doc["gateway"], doc["status"], doc["port"]) == (
            gateway,
            "active",
            known.get("port"),
        )

    pollers = [
        Poller("files", files, 0.001),
        Poller("qBittorrent", lambda: "port" in known and qbt_port() == known["port"], 0.005),
    ]
    del old_port
    return pollers, [("MQTT state", watch, state)], known


def main() -> int:
    """Inside the client namespace: peers, daemon, then ``--moves`` timed moves."""
    from benchmarks.peers import Daemon, running  # noqa: PLC0415
    from pia_mqtt.simulator.pia import PiaSimulator  # noqa: PLC0415
    from tests.fixtures.common import free_port  # noqa: PLC0415
    from tests.fixtures.mosquitto import Broker  # noqa: PLC0415
    from tests.fixtures.pia import SIM_PASS, SIM_USER  # noqa: PLC0415
    from tests.fixtures.qbittorrent import PASSWORD, USER, QbittorrentProcess  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--sim-dir", type=Path, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--moves", type=int, default=3)
    args = parser.parse_args()
    folder: Path = args.folder
    (folder / "mosquitto").mkdir()
    sim = PiaSimulator(args.sim_dir, users={SIM_USER: SIM_PASS})
    broker = Broker(folder / "mosquitto")
    qbt = QbittorrentProcess(folder / "qbt", free_port(), USER, PASSWORD, free_port())
    watch: MqttWatch | None = None
    try:
        sim.start()
        broker.start()
        qbt.write_config()
        qbt.start()
        watch = MqttWatch(broker.host, broker.port, "bench-move")
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "PIA_USER": SIM_USER, "PIA_PASS": SIM_PASS, "PIA_TOKEN_URL": sim.token_url,
            "REQUESTS_CA_BUNDLE": str(sim.token_ca_file), "PIA_CA_CERT": str(sim.ca_file),
            "PORT_FILE": str(folder / "pia-port.txt"),
            "PORT_DATA_FILE": str(folder / "pia-port-data.json"),
            "STATE_FILE": str(folder / "pia-lease.json"),
            "QBITTORRENT_HOST": qbt.url, "QBITTORRENT_USER": USER, "QBITTORRENT_PASS": PASSWORD,
            "MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port), "MQTT_TOPIC": "bench-move",
            "LOG_LEVEL": "INFO",
        }  # fmt: skip
        qbt_port = lambda: int(qbt.preferences()["listen_port"])  # noqa: E731
        seconds: list[float] = []
        with running(Daemon.start(env, folder / "daemon.log")) as daemon:
            pollers, mqtt, _ = _everywhere(folder, watch, qbt_port, SIDES[0][2], None)
            wait_all(pollers, mqtt, after=time.monotonic(), timeout=30, alive=daemon.problem)
            for move in range(args.moves):
                to = (move + 1) % 2
                time.sleep(1.0)  # settle: no move during the previous one's sink updates
                pollers, mqtt, _ = _everywhere(folder, watch, qbt_port, SIDES[to][2], None)
                moved = time.monotonic()
                _move(to)
                seen = wait_all(pollers, mqtt, after=moved, timeout=30, alive=daemon.problem)
                seconds.append(max(seen.values()))
        print(json.dumps({"seconds": seconds}), flush=True)
    except Exception as exc:
        log = (
            (folder / "daemon.log").read_text()[-2000:] if (folder / "daemon.log").exists() else ""
        )
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}\n{log}"}), flush=True)
    finally:
        if watch is not None:
            watch.close()
        qbt.close()
        broker.stop()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

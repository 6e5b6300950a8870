"""The real peers on loopback (simulator, mosquitto, qbittorrent-nox) and the daemon process.

The peers are the test fixtures' own classes (``tests.fixtures``), started once per
benchmark run on free 127.0.0.1 ports in a temporary folder. The PIA simulator runs in
this process, so the daemon's measured memory and CPU are its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

import certifi

from pia_mqtt.simulator.pia import PiaSimulator, ensure_material
from tests.fixtures.common import free_port
from tests.fixtures.mosquitto import Broker
from tests.fixtures.pia import SIM_PASS, SIM_USER
from tests.fixtures.qbittorrent import PASSWORD, USER, QbittorrentProcess

if TYPE_CHECKING:
    from pia_mqtt.simulator.pia import SimGateway

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Peers:
    """Simulator (token endpoint + one gateway), mosquitto and qbittorrent-nox."""

    folder: Path
    sim: PiaSimulator = field(init=False)
    broker: Broker = field(init=False)
    qbt: QbittorrentProcess = field(init=False)
    ca_bundle: Path = field(init=False)

    def __enter__(self) -> Self:
        material = self.folder / "sim"
        ensure_material(material)
        self.sim = PiaSimulator(material, users={SIM_USER: SIM_PASS})
        self.sim.start()
        self.sim.add_gateway(cn="bench-gateway")
        # As in production, the token request verifies against the whole public trust store
        # (certifi, ~150 CAs: about 3 MiB once loaded); the simulator's CA is appended.
        self.ca_bundle = self.folder / "token-ca-bundle.pem"
        self.ca_bundle.write_bytes(
            Path(certifi.where()).read_bytes() + b"\n" + self.sim.token_ca_file.read_bytes()
        )
        (self.folder / "mosquitto").mkdir()
        self.broker = Broker(self.folder / "mosquitto")
        self.broker.start()
        self.qbt = QbittorrentProcess(
            profile=self.folder / "qbt",
            webui_port=free_port(),
            user=USER,
            password=PASSWORD,
            listen_port=free_port(),
        )
        self.qbt.write_config()
        self.qbt.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.qbt.close()
        self.broker.stop()
        self.sim.stop()

    @property
    def gateway(self) -> SimGateway:
        """The simulator's one gateway."""
        return self.sim.gateways[0]

    def env(self, run: Path, topic: str, **extra: str) -> dict[str, str]:
        """The daemon's environment: every peer on loopback, files under ``run``."""
        keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TZ"}}
        return (
            keep
            | {
                "PYTHONPATH": str(REPO),
                "PIA_USER": SIM_USER,
                "PIA_PASS": SIM_PASS,
                "PIA_TOKEN_URL": self.sim.token_url,
                "PIA_CA_CERT": str(self.sim.ca_file),
                "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
                # Loopback only: the configured gateway is the only address ever probed.
                "PIA_GATEWAY": self.gateway.host,
                "PIA_GATEWAY_PORT": str(self.gateway.port),
                "PORT_FILE": str(run / "pia-port.txt"),
                "PORT_DATA_FILE": str(run / "pia-port-data.json"),
                "STATE_FILE": str(run / "pia-lease.json"),
                "QBITTORRENT_HOST": self.qbt.url,
                "QBITTORRENT_USER": USER,
                "QBITTORRENT_PASS": PASSWORD,
                "MQTT_HOST": self.broker.host,
                "MQTT_PORT": str(self.broker.port),
                "MQTT_TOPIC": topic,
                "LOG_LEVEL": "WARNING",
            }
            | extra
        )

    def qbt_port(self) -> int:
        """qBittorrent's listen_port, read with the benchmark's own session."""
        return int(self.qbt.preferences()["listen_port"])


@dataclass
class Daemon:
    """One ``python -m pia_mqtt run`` process."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], log: Path, *args: str) -> Daemon:
        """Start the daemon (``run`` unless ``args`` say otherwise); stderr goes to ``log``."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *args] if args else [sys.executable, "-m", "pia_mqtt", "run"],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(process, log)

    def problem(self) -> str | None:
        """None while running; the exit status and the log once it has exited."""
        if self.process.poll() is None:
            return None
        return f"daemon exited ({self.process.returncode}): {self.log.read_text()[-2000:]}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def rss_mib(self) -> float:
        """VmRSS from /proc/<pid>/status, in MiB."""
        return vm_rss_mib(self.process.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU so far, waited-for children included (``ip`` runs; /proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / CLK_TCK


def vm_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (the kB figure / 1024)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def running(daemon: Daemon):  # type: ignore[no-untyped-def]
    """Stop the daemon when the block ends, also on errors."""
    try:
        yield daemon
    finally:
        daemon.stop()

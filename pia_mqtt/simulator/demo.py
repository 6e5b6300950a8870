"""``pia-mqtt demo``: the whole loop against the built-in PIA simulator, no account needed.

The simulator (token endpoint + one gateway, real HTTPS with a PIA-like CA) runs in this
process on 127.0.0.1; the port files go to a local folder. qBittorrent, MQTT and the hook
are used as configured in the environment, so a newcomer can point the demo at their own
broker and see the device appear in Home Assistant, with three differences that keep a real
install safe beside it:

- its own MQTT topic (``--topic``, default ``pia-mqtt-demo``) and so its own client id and
  Home Assistant device: two demos, or a demo beside the daemon, never kick each other off
  the broker or flip each other's retained port;
- on exit it removes its device and retained topics from the broker (nothing stays in HA);
- on exit it gives qBittorrent back the listening port it had before the demo.

It also says each keep-alive (the daemon logs those at DEBUG) and where the files are.
This module is the demo's wiring: like ``wiring.py`` it may name concrete classes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from ipaddress import IPv4Address
from pathlib import Path

from pydantic import SecretStr

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, Snapshot
from pia_mqtt.errors import ConfigError, TorrentClientError
from pia_mqtt.settings import Settings

log = logging.getLogger("pia_mqtt.demo")

DEMO_USER = "p0000000"
DEMO_TOPIC = "pia-mqtt-demo"
MIN_INTERVAL, MAX_INTERVAL = 1, 900  # PIA drops a port after 15 minutes without a bind


class DemoUnavailableError(RuntimeError):
    """The simulator's dependency (cryptography) is not installed."""


DEMO_PASSWORD = "demo-password"  # noqa: S105 - the simulator's own throw-away account


def check_folder(folder: Path) -> None:
    """Create the demo's folder or raise ConfigError saying why it cannot be used."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".pia-mqtt-demo-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        problem = f"--dir {folder}: cannot use it for the demo's files ({reason})"
        raise ConfigError([problem]) from None


@contextlib.contextmanager
def demo_settings(
    settings: Settings, *, folder: Path, interval: int, topic: str = DEMO_TOPIC
) -> Iterator[Settings]:
    """Start the simulator and yield settings that point the daemon at it."""
    try:
        from pia_mqtt.simulator.pia import PiaSimulator  # noqa: PLC0415 - cryptography only here
    except ImportError as exc:
        raise DemoUnavailableError(
            "the demo needs the 'demo' extra (cryptography): pip install 'pia-mqtt[demo]'"
        ) from exc

    check_folder(folder)
    redact.register(DEMO_PASSWORD)
    with PiaSimulator(folder / "simulator", users={DEMO_USER: DEMO_PASSWORD}) as sim:
        gateway = sim.add_gateway(cn="demo-gateway")
        # requests reads the token endpoint's trust store from here (demo only).
        os.environ["REQUESTS_CA_BUNDLE"] = str(sim.token_ca_file)
        overrides = {
            "pia_user": DEMO_USER,
            "pia_pass": SecretStr(DEMO_PASSWORD),
            "pia_token_url": sim.token_url,
            "pia_ca_cert": sim.ca_file,
            "pia_gateway": IPv4Address("127.0.0.1"),
            "pia_gateway_port": gateway.port,
            "pia_hostname": None,
            "port_forward_refresh_interval": interval,
            "port_file": folder / "pia-port.txt",
            "port_data_file": folder / "pia-port-data.json",
            "state_file": folder / "pia-lease.json",
            # Its own topic, client id (derived from the topic) and HA device.
            "mqtt_topic": topic,
            "mqtt_client_id": None,
        }
        mqtt = f"; MQTT topic {topic}/" if settings.mqtt_host else ""
        print(
            f"pia-mqtt demo: simulated PIA at {sim.token_url} and gateway 127.0.0.1:"
            f"{gateway.port}; files in {folder.resolve()}{mqtt}; keep-alive every {interval} s. "
            "Ctrl-C to stop.",
            file=sys.stderr,
        )
        demo = settings.model_copy(update=overrides)
        with _restore_qbittorrent(demo):
            yield demo


@contextlib.contextmanager
def _restore_qbittorrent(settings: Settings) -> Iterator[None]:
    """Give qBittorrent back, on exit, the listening port it had before the demo."""
    if settings.qbittorrent_host is None:
        yield
        return
    from pia_mqtt.torrent.qbittorrent import QbittorrentClient  # noqa: PLC0415

    def client() -> QbittorrentClient:
        return QbittorrentClient(
            settings.qbittorrent_host or "",
            username=settings.qbittorrent_user,
            password=settings.secret("qbittorrent_pass"),
            api_key=settings.secret("qbittorrent_api_key"),
        )

    previous: int | None = None
    reader = client()
    try:
        previous = reader.listen_port()
    except TorrentClientError as exc:
        log.warning("demo: cannot read qBittorrent's listening port, it will not be put back: %s",
                    redact.describe(exc))  # fmt: skip
    finally:
        reader.close()
    try:
        yield
    finally:
        if previous is not None:
            writer = client()
            try:
                writer.set_listen_port(previous)
                log.info("demo: qBittorrent's listening port set back to %d", previous)
            except TorrentClientError as exc:
                log.warning("demo: could not set qBittorrent's listening port back to %d: %s",
                            previous, redact.describe(exc))  # fmt: skip
            finally:
                writer.close()


class DemoNarrator:
    """A sink that says, at INFO, each keep-alive and where the files are (demo only)."""

    name = "demo"

    def __init__(self, settings: Settings) -> None:
        self._files = f"{settings.port_file} and {settings.port_data_file}"
        self._last: datetime | None = None
        self._port: int | None = None

    @property
    def check_interval(self) -> float | None:
        """No periodic check."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Say each keep-alive: a new successful bind of the port already bound."""
        refreshed, port = snapshot.last_refresh, snapshot.port
        if refreshed is None or port is None or refreshed == self._last:
            return
        again = self._last is not None and port == self._port
        self._last, self._port = refreshed, port
        if again:
            when = snapshot.next_refresh.strftime("%H:%M:%S") if snapshot.next_refresh else "?"
            log.info("demo: keep-alive: port %d bound again, %s updated; next at %s",
                     port, self._files, when)  # fmt: skip

    def event(self, event: Event) -> None:
        """After the engine's 'Port ... bound' line, say where the port now is."""
        if event.kind in (EventKind.PORT_CHANGED, EventKind.BOUND) and event.port is not None:
            log.info("demo: port %d is in %s", event.port, self._files)

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to release."""

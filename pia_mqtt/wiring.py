"""Build the real objects from settings: the only place that knows every concrete class.

Heavy modules are imported inside the builders so that ``pia-mqtt --version`` and
``healthcheck`` stay fast and a start only pays for what the settings switch on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pia_mqtt import __version__
from pia_mqtt.core.engine import Clock, Controller, Engine, utc_now
from pia_mqtt.core.model import Sink, Status
from pia_mqtt.core.timers import Monotonic
from pia_mqtt.settings import PortSource, Settings

if TYPE_CHECKING:
    from pia_mqtt.gateway.finder import GatewayFinder
    from pia_mqtt.pia.lease import LeaseStore
    from pia_mqtt.torrent.sink import TorrentClient

log = logging.getLogger(__name__)

ONCE_TIMEOUT = 60.0
DRAIN_TIMEOUT = 30.0


def build_engine(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    monotonic: Monotonic = time.monotonic,
    once: bool = False,
    demo: bool = False,
) -> Engine:
    """An engine with its controller and every sink the settings enable (not started).

    ``once``: the controller does not retry (its messages say so) and the status endpoint
    is left out (nothing would scrape it). ``demo``: a sink that says each keep-alive, and
    MQTT removes its retained topics and device on exit.
    """
    from pia_mqtt.atomic import remove_stale_temps  # noqa: PLC0415
    from pia_mqtt.sinks.portfiles import PortFilesSink  # noqa: PLC0415

    for path in (settings.port_file, settings.port_data_file, settings.state_file):
        for stale in remove_stale_temps(path):
            log.info("Removed %s, left by an interrupted write", stale)
    from pia_mqtt.pia.lease import LeaseStore  # noqa: PLC0415

    store = LeaseStore(settings.state_file)
    # The port published before this start: hooks and events compare against it (DESIGN).
    engine = Engine(
        clock=clock,
        monotonic=monotonic,
        source=settings.port_source.value,
        last_port=store.last_port(),
    )
    sinks: list[Sink] = [
        PortFilesSink(
            settings.port_file,
            settings.port_data_file,
            refresh_interval=settings.port_forward_refresh_interval,
        )
    ]
    if settings.port_source is PortSource.GLUETUN:
        from pia_mqtt.sinks.memory import PortMemorySink  # noqa: PLC0415

        sinks.append(PortMemorySink(store))
    if demo:
        from pia_mqtt.simulator.demo import DemoNarrator  # noqa: PLC0415

        sinks.append(DemoNarrator(settings))
    sinks += _optional_sinks(settings, engine, clock)
    if not once:
        sinks += _http_sink(settings, clock, monotonic)
    if settings.mqtt_enabled:
        from pia_mqtt.mqtt.sink import MqttSink  # noqa: PLC0415

        mqtt = MqttSink(
            settings,
            engine,
            qbittorrent_enabled=settings.qbittorrent_enabled,
            transmission_enabled=settings.transmission_url is not None,
            deluge_enabled=settings.deluge_url is not None,
            version=__version__,
            forget_on_close=demo,
        )
        mqtt.start()
        # Last, so that on shutdown it says "offline" after everything else is closed.
        sinks.append(mqtt)
    engine.attach(_controller(settings, engine, store, once=once), sinks)
    return engine


def _torrent_clients(settings: Settings) -> list[TorrentClient]:
    """One client per configured torrent client; each gets a sink of its own."""
    clients: list[TorrentClient] = []
    if settings.qbittorrent_host is not None:
        from pia_mqtt.torrent.qbittorrent import QbittorrentClient  # noqa: PLC0415

        clients.append(
            QbittorrentClient(
                settings.qbittorrent_host,
                username=settings.qbittorrent_user,
                password=settings.secret("qbittorrent_pass"),
                api_key=settings.secret("qbittorrent_api_key"),
            )
        )
    if settings.transmission_url is not None:
        from pia_mqtt.torrent.transmission import TransmissionClient  # noqa: PLC0415

        clients.append(
            TransmissionClient(
                settings.transmission_url,
                username=settings.transmission_user,
                password=settings.secret("transmission_pass"),
            )
        )
    if settings.deluge_url is not None:
        from pia_mqtt.torrent.deluge import DelugeClient  # noqa: PLC0415

        clients.append(
            DelugeClient(settings.deluge_url, password=settings.secret("deluge_pass") or "")
        )
    return clients


def _optional_sinks(settings: Settings, engine: Engine, clock: Clock) -> list[Sink]:
    sinks: list[Sink] = []
    clients = _torrent_clients(settings)
    if clients:
        from pia_mqtt.torrent.sink import TorrentSink  # noqa: PLC0415

        interval = settings.qbittorrent_check_interval
        sinks += [TorrentSink(c, engine, clock=clock, check_interval=interval) for c in clients]
    if settings.port_change_command:
        from pia_mqtt.sinks.hook import HookSink  # noqa: PLC0415

        sinks.append(
            HookSink(
                settings.port_change_command,
                engine,
                clock=clock,
                timeout=settings.port_change_command_timeout,
            )
        )
    if settings.port_source is PortSource.PIA and settings.gluetun_control_url:
        from pia_mqtt.gluetun.client import GluetunClient  # noqa: PLC0415
        from pia_mqtt.gluetun.push import GluetunPushSink  # noqa: PLC0415

        gluetun = GluetunClient(settings.gluetun_url, api_key=settings.secret("gluetun_api_key"))
        sinks.append(
            GluetunPushSink(
                gluetun, engine, clock=clock, check_interval=settings.gluetun_check_interval
            )
        )
    return sinks


def _http_sink(settings: Settings, clock: Clock, monotonic: Monotonic) -> list[Sink]:
    """The status endpoint when HTTP_PORT is set; nothing is imported or bound otherwise."""
    if settings.http_port is None:
        return []
    from pia_mqtt.http.server import HttpSink  # noqa: PLC0415

    return [
        HttpSink(
            str(settings.http_address),
            settings.http_port,
            version=__version__,
            refresh_interval=settings.port_forward_refresh_interval,
            clock=clock,
            monotonic=monotonic,
        )
    ]


def _controller(
    settings: Settings, engine: Engine, store: LeaseStore, *, once: bool = False
) -> Controller:
    if settings.port_source is PortSource.GLUETUN:
        from pia_mqtt.gluetun.client import GluetunClient, GluetunPortReader  # noqa: PLC0415
        from pia_mqtt.gluetun.follow import POLL_INTERVAL, GluetunFollower  # noqa: PLC0415

        client = GluetunClient(settings.gluetun_url, api_key=settings.secret("gluetun_api_key"))
        # GLUETUN_CHECK_INTERVAL shortens the read interval (a tunnel restart shorter than
        # one interval goes unseen), never lengthens it.
        interval = min(POLL_INTERVAL, settings.gluetun_check_interval)
        return GluetunFollower(engine, GluetunPortReader(client), interval=interval)
    from pia_mqtt.gateway.netlink import NetlinkWatch  # noqa: PLC0415
    from pia_mqtt.pia.client import PiaClient  # noqa: PLC0415
    from pia_mqtt.pia.manager import LeaseManager  # noqa: PLC0415

    pia = PiaClient(
        username=settings.pia_user or "",
        password=settings.secret("pia_pass") or "",
        token_url=settings.pia_token_url,
        ca_file=settings.ca_cert,
        gateway_port=settings.pia_gateway_port,
    )
    return LeaseManager(
        engine,
        pia=pia,
        finder=build_finder(settings),
        store=store,
        refresh_interval=settings.port_forward_refresh_interval,
        watch_interval=settings.gateway_watch_interval,
        events=NetlinkWatch(),
        retries=not once,
    )


def build_finder(settings: Settings) -> GatewayFinder:
    """Gateway detection configured from the settings."""
    from pia_mqtt.gateway.finder import GatewayFinder  # noqa: PLC0415

    configured = str(settings.pia_gateway) if settings.pia_gateway else None
    return GatewayFinder(
        configured=configured,
        hostname=settings.pia_hostname,
        port=settings.pia_gateway_port,
        ca_file=settings.ca_cert,
        probe_target=settings.probe_target,
        sweep_octets=settings.sweep_octets,
    )


def run_once(engine: Engine, *, timeout: float = ONCE_TIMEOUT) -> bool:
    """Acquire and bind once, let every sink finish, close; True when a port is bound."""
    engine.start()
    try:
        engine.run(
            until=lambda: engine.snapshot.status in (Status.ACTIVE, Status.ERROR), timeout=timeout
        )
        # Waiting on the sinks is interruptible: SIGTERM ends `once` within 2 s here too.
        with engine.interruptible():
            deadline = time.monotonic() + DRAIN_TIMEOUT
            for sink in engine.sinks:
                drain = getattr(sink, "drain", None)
                if drain is not None:
                    drain(max(0.0, deadline - time.monotonic()))
            # Sink reports (qBittorrent health...) land in the snapshot before MQTT flushes.
            engine.run_pending()
            for sink in engine.sinks:
                flush = getattr(sink, "flush", None)
                wait_connected = getattr(sink, "wait_connected", None)
                if flush is not None and wait_connected is not None and wait_connected(5.0):
                    flush(5.0)
        return engine.snapshot.status is Status.ACTIVE
    finally:
        engine.close()


def describe_once(engine: Engine) -> str:
    """The summary line `pia-mqtt once` prints."""
    s = engine.snapshot
    parts = [f"port={s.port}", f"status={s.status.value}", f"gateway={s.gateway}"]
    for name, health in sorted(s.sinks.items()):
        parts.append(f"{name}={health.state.value}")
    if s.last_error:
        parts.append(f"error={s.last_error}")
    return " ".join(parts)

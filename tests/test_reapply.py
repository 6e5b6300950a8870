"""Re-applying the same port after a tunnel change (DESIGN: hook and events rule).

The engine bumps ``Snapshot.tunnel_epoch`` and announces ``port_reapplied`` when a route or
address change re-ran detection and the port did not change; the torrent sink then makes
its client listen again (qBittorrent loses its socket when its interface goes down and up)
and never does so on an ordinary check.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import EventKind, Snapshot, Status, SyncState
from pia_mqtt.core.model import SinkHealth as Health
from pia_mqtt.gateway.tables import Route
from pia_mqtt.simulator.pia import PiaSimulator
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.sink import TorrentSink
from tests.fixtures.common import RecordingInbox
from tests.fixtures.qbittorrent import PASSWORD, USER, QbittorrentProcess
from tests.harness import advance, at, build_daemon

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def clock() -> datetime:
    """Frozen time."""
    return T0


class RecordingClient:
    """A TorrentClient that records every call (to count what the sink asks for)."""

    name = "qbittorrent"
    label = "qBittorrent"
    credentials = "QBITTORRENT_USER/QBITTORRENT_PASS"
    failed_logins = 0

    def __init__(self) -> None:
        self.port = 1
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def listen_port(self) -> int:
        """The current port."""
        return self.port

    def set_listen_port(self, port: int) -> int:
        """Record and set."""
        with self._lock:
            self.calls.append(("set", port))
        self.port = port
        return port

    def reapply_listen_port(self, port: int) -> int:
        """Record the re-apply."""
        with self._lock:
            self.calls.append(("reapply", port))
        return port

    def close(self) -> None:
        """Nothing to close."""


def snap(port: int, epoch: int) -> Snapshot:
    """An engine snapshot with a port and a tunnel epoch."""
    return Snapshot(status=Status.ACTIVE, updated_at=T0, port=port, tunnel_epoch=epoch)


def test_sink_reapplies_only_on_a_new_tunnel_epoch() -> None:
    """Publishing the same port again or checking never re-applies; a new epoch does, once."""
    client = RecordingClient()
    sink = TorrentSink(client, RecordingInbox(), check_interval=60, clock=clock)
    try:
        for action, snapshot in (
            ("publish", snap(50000, 0)),
            ("publish", snap(50000, 0)),
            ("check", snap(50000, 0)),
            ("publish", snap(50000, 1)),
            ("check", snap(50000, 1)),
            ("publish", snap(50000, 1)),
        ):
            getattr(sink, action)(snapshot)
            assert sink.drain(10)
    finally:
        sink.close()
    assert [("set", 50000), ("reapply", 50000)] == client.calls


def test_qbittorrent_ends_in_sync_on_the_same_port_after_a_reapply(
    qbittorrent: QbittorrentProcess,
) -> None:
    """Against a real qBittorrent.

    The re-apply (away and back) leaves it on the same port, in sync, with no port event
    (the number did not change).
    """
    inbox = RecordingInbox()
    port = 40000 + qbittorrent.listen_port % 20000
    client = QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD)
    sink = TorrentSink(client, inbox, check_interval=60, clock=clock)
    try:
        sink.publish(snap(port, 0))
        assert sink.drain(15)
        events_before = len(inbox.events)
        sink.publish(snap(port, 1))
        assert sink.drain(15)
    finally:
        sink.close()
    assert port == qbittorrent.preferences()["listen_port"]
    # details: qBittorrent's connection_status, checked in tests/test_qbittorrent_5x.py
    assert Health(state=SyncState.IN_SYNC, port=port, last_sync=T0) == dataclasses.replace(
        inbox.health, details=()
    )
    assert events_before == len(inbox.events)


def test_a_network_change_with_the_same_gateway_reapplies_the_port(
    pia_sim: PiaSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway watch sees routes change, detection finds the same gateway.

    The port is bound again and re-applied (``port_reapplied``, epoch + 1), not changed.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    routes: list[Route] = []
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=5)
        daemon.manager._finder._read_system = lambda: (list(routes), [])  # type: ignore[attr-defined]
        # The way to the gateway follows the fake table too (a tunnel made again has a new
        # interface): a change that leaves it alone is another network's, not a reconnect.
        daemon.manager._finder.path = lambda _gw: f"10.9.0.2 ifindex {len(routes)}"  # type: ignore[attr-defined]
        daemon.engine.start()
        advance(daemon.engine, traveller, 6)
        port = daemon.engine.snapshot.port
        binds = pia_sim.gateways[0].stats().binds_ok
        assert (EventKind.PORT_CHANGED, 0) == (
            daemon.recorder.kinds()[-1],
            daemon.engine.snapshot.tunnel_epoch,
        )
        advance(daemon.engine, traveller, 10)  # nothing changed: nothing re-applied
        assert 0 == daemon.engine.snapshot.tunnel_epoch
        routes.append(Route(dest="0.0.0.0", prefix=0, gateway="10.9.0.1", dev="tun0"))
        advance(daemon.engine, traveller, 6)
        snapshot = daemon.engine.snapshot
        assert (port, 1) == (snapshot.port, snapshot.tunnel_epoch)
        assert EventKind.PORT_REAPPLIED == daemon.recorder.kinds()[-1]
        assert EventKind.PORT_CHANGED not in daemon.recorder.kinds()[1:]
        assert pia_sim.gateways[0].stats().binds_ok == binds + 1
        daemon.engine.close()

"""Re-applying the port after a VPN reconnect, proved on real qBittorrent 4.5.2 and 5.3.0.

qBittorrent runs in a network namespace of its own (tests.fixtures.peersroot.PeerNetns: its
Web UI is reached over that namespace's veth) with its torrent session bound to ``vpn0``, a
veth whose other end ``vpn0p`` sits in a second namespace playing "the internet". A VPN
reconnect is ``vpn0`` deleted and created again with the same address, as a tun/wg device
is. Whether qBittorrent listens is read two ways: ``ss -ltn`` in its namespace (which device
the socket is bound to) and a TCP connect from the far end, the way a peer would come in.

What the real versions do (measured here): 4.5.2 (libtorrent 1.2) keeps its socket bound to
the deleted interface's index (``10.77.0.2%if7``), so peers get "connection refused" until
the port changes; setting the same port again or re-setting the interface does nothing,
the port set to a neighbour and back makes it listen again. 5.3.0 (libtorrent 2.0) drops
the socket with the interface and opens it again by itself once the interface is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from pia_mqtt.core.model import Snapshot, Status, SyncState
from pia_mqtt.errors import TorrentUnavailableError
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.sink import TorrentSink
from tests.fixtures.common import RecordingInbox, eventually
from tests.fixtures.peersroot import PeerNetns
from tests.fixtures.qbittorrent import (
    PASSWORD,
    USER,
    V4,
    V5,
    VERSIONS,
    QbittorrentFactory,
    QbittorrentProcess,
)
from tests.netns import NetLab, Netns
from tests.test_qbittorrent import FakeClock

VPN_ADDRESS = "10.77.0.2"
FAR_ADDRESS = "10.77.0.1"
PORT = 41000
_CONNECT = """
import json, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print(json.dumps("connected"))
except OSError as exc:
    print(json.dumps(exc.strerror or str(exc)))
"""


@pytest.fixture(params=VERSIONS)
def qbittorrent_version(request: pytest.FixtureRequest) -> str:
    """Every test here runs on 4.5.2 and on 5.3.0."""
    version: str = request.param
    return version


@dataclass
class Vpn:
    """``vpn0`` in qBittorrent's namespace, its far end in a namespace of the test's own."""

    qbt_ns: PeerNetns
    far: Netns

    def up(self) -> None:
        """Create the interface pair with the same addresses as every time before."""
        self.qbt_ns_ip("link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p",
                       "netns", self.far.name)  # fmt: skip
        self.qbt_ns_ip("addr", "add", f"{VPN_ADDRESS}/24", "dev", "vpn0")
        self.qbt_ns_ip("link", "set", "vpn0", "up")
        self.far.ip("addr", "add", f"{FAR_ADDRESS}/24", "dev", "vpn0p")
        self.far.ip("link", "set", "vpn0p", "up")

    def down(self) -> None:
        """Delete the interface (its far end goes with it), as a VPN client does on reconnect."""
        self.qbt_ns_ip("link", "del", "vpn0")

    def qbt_ns_ip(self, *args: str) -> None:
        """Run ``ip -n <qBittorrent's namespace> args``."""
        Netns(self.qbt_ns.name).ip(*args)

    def sockets(self, port: int) -> list[str]:
        """Local addresses of the TCP sockets listening on ``port`` (``10.77.0.2%vpn0:41000``)."""
        out = Netns(self.qbt_ns.name).run("ss", "-ltnH", timeout=10).stdout
        found = [line.split()[3] for line in out.splitlines()]
        return [address for address in found if address.endswith(f":{port}")]

    def connect(self, port: int) -> str:
        """Connect from the far end like a peer: ``connected`` or the OS's reason."""
        reply: str = self.far.python(_CONNECT, VPN_ADDRESS, str(port))
        return reply

    def listening(self, port: int) -> bool:
        """True when a socket is bound to today's ``vpn0`` and a peer gets in."""
        return self.sockets(port) == [f"{VPN_ADDRESS}%vpn0:{port}"] and self.connect(port) == (
            "connected"
        )


@pytest.fixture
def vpn(peer_netns: PeerNetns) -> Iterator[Vpn]:
    """A VPN-like interface for a qBittorrent started in ``peer_netns``."""
    lab = NetLab("qbtvpn")
    try:
        made = Vpn(peer_netns, lab.namespace("far"))
        made.up()
        yield made
    finally:
        lab.close()


def start_on_vpn(factory: QbittorrentFactory, vpn: Vpn) -> QbittorrentProcess:
    """Start qBittorrent in the VPN's namespace, its torrent session bound to ``vpn0``."""
    return factory(
        netns=vpn.qbt_ns.name,
        interface=("vpn0", VPN_ADDRESS),
        webui_address=vpn.qbt_ns.address,
        listen_port=PORT,
    )


def never(check: Callable[[], bool], *, seconds: float) -> bool:
    """True if ``check`` stayed false for ``seconds`` (polled like ``eventually``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return False
        time.sleep(0.2)
    return True


def snapshot(epoch: int) -> Snapshot:
    """The engine's snapshot for PORT at tunnel epoch ``epoch``."""
    return Snapshot(
        status=Status.ACTIVE, updated_at=datetime(2026, 1, 1, tzinfo=UTC), port=PORT,
        tunnel_epoch=epoch,
    )  # fmt: skip


def test_reapply_makes_qbittorrent_listen_again_after_a_vpn_reconnect(
    qbittorrent_factory: QbittorrentFactory, vpn: Vpn
):
    """After vpn0 is recreated, ordinary checks leave 4.5.2 deaf; the re-apply fixes it.

    The sink sees a new tunnel_epoch only after the reconnect, as the engine sends it. On
    5.3 the socket is back before the re-apply already (libtorrent 2.0 reopens it).
    """
    qbt = start_on_vpn(qbittorrent_factory, vpn)
    assert eventually(lambda: vpn.listening(PORT), timeout=10)
    inbox = RecordingInbox()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock())
    try:
        sink.publish(snapshot(epoch=0))
        assert sink.drain(15)
        vpn.down()
        vpn.up()
        for _ in range(3):  # ordinary checks: no re-apply
            sink.check(snapshot(epoch=0))
            assert sink.drain(15)
        if qbt.version == V4:
            # Still "listening" according to ss, but on the deleted interface's index.
            assert eventually(lambda: vpn.sockets(PORT) not in ([], [f"{VPN_ADDRESS}%vpn0:{PORT}"]))
            assert vpn.sockets(PORT)[0].startswith(f"{VPN_ADDRESS}%if")
            assert vpn.connect(PORT) == "Connection refused"
        else:
            assert eventually(lambda: vpn.listening(PORT), timeout=10)
        sink.publish(snapshot(epoch=1))  # the engine re-applied: the tunnel changed
        assert sink.drain(15)
        assert eventually(lambda: vpn.listening(PORT), timeout=10)
    finally:
        sink.close()
    assert (inbox.health.state, inbox.health.port) == (SyncState.IN_SYNC, PORT)
    assert qbt.preferences()["listen_port"] == PORT
    assert inbox.events == []  # the port number never changed: no qbittorrent_synced


def test_setting_the_same_port_again_does_not_make_4x_listen(
    qbittorrent_factory: QbittorrentFactory, vpn: Vpn
):
    """Why the re-apply moves the port away and back: the same port again changes nothing.

    On 4.5.2 the socket stays dead after set_listen_port(PORT) and after re-setting the
    interface; on 5.3 it came back on its own, so both calls find it listening.
    """
    qbt = start_on_vpn(qbittorrent_factory, vpn)
    assert eventually(lambda: vpn.listening(PORT), timeout=10)
    vpn.down()
    vpn.up()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    try:
        assert client.set_listen_port(PORT) == PORT
        qbt.set_preferences(
            {"current_network_interface": "vpn0", "current_interface_address": VPN_ADDRESS}
        )
        if qbt.version == V4:
            assert never(lambda: vpn.listening(PORT), seconds=3)
        else:
            assert eventually(lambda: vpn.listening(PORT), timeout=10)
        assert client.reapply_listen_port(PORT) == PORT
        assert eventually(lambda: vpn.listening(PORT), timeout=10)
    finally:
        client.close()
    assert qbt.preferences()["listen_port"] == PORT


class FlakyReapplyClient:
    """A TorrentClient whose first re-apply fails as an unreachable qBittorrent does."""

    name = "qbittorrent"
    label = "qBittorrent"
    credentials = "QBITTORRENT_USER/QBITTORRENT_PASS"
    failed_logins = 0

    def __init__(self) -> None:
        self.reapplies = 0

    def listen_port(self) -> int:
        """Always already on PORT (a re-apply is the only thing to do)."""
        return PORT

    def set_listen_port(self, port: int) -> int:
        """Never needed here."""
        raise AssertionError(f"unexpected set_listen_port({port})")

    def reapply_listen_port(self, port: int) -> int:
        """Fail the first time, then succeed."""
        self.reapplies += 1
        if self.reapplies == 1:
            raise TorrentUnavailableError("qBittorrent went away half-way")
        return port

    def close(self) -> None:
        """Nothing to release."""


def test_a_failed_reapply_is_tried_again_on_the_next_check_only():
    """A re-apply that failed stays pending: the next check does it, later checks do not."""
    client = FlakyReapplyClient()
    inbox = RecordingInbox()
    sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock())
    try:
        sink.publish(snapshot(epoch=0))
        assert sink.drain(15)
        sink.publish(snapshot(epoch=1))
        assert sink.drain(15)
        assert (client.reapplies, inbox.health.state) == (1, SyncState.UNREACHABLE)
        for _ in range(3):
            sink.check(snapshot(epoch=1))
            assert sink.drain(15)
    finally:
        sink.close()
    assert (client.reapplies, inbox.health.state) == (2, SyncState.IN_SYNC)


@pytest.mark.parametrize("qbittorrent_version", [V5], indirect=True)
def test_connection_status_is_connected_once_a_peer_came_in(
    qbittorrent_factory: QbittorrentFactory, vpn: Vpn
):
    """5.3: a peer connecting over vpn0 turns the sink's connection_status into connected.

    qBittorrent updates the status from its session statistics, a second or so late. 4.5.2
    (libtorrent 1.2) stayed firewalled for 30 s of bare TCP connections with no torrent
    loaded, so the connected half is pinned on 5.3 only.
    """
    qbt = start_on_vpn(qbittorrent_factory, vpn)
    assert eventually(lambda: vpn.listening(PORT), timeout=10)
    inbox = RecordingInbox()
    client = QbittorrentClient(qbt.url, username=USER, password=PASSWORD)
    sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock())
    try:
        assert client.connection_status() in ("firewalled", "disconnected")

        def peer_came_in() -> bool:
            assert vpn.connect(PORT) == "connected"
            sink.check(snapshot(epoch=0))
            assert sink.drain(15)
            return dict(inbox.health.details).get("connection_status") == "connected"

        assert eventually(peer_came_in, timeout=30, interval=0.5)
    finally:
        sink.close()
    assert (inbox.health.state, inbox.events) == (SyncState.IN_SYNC, [])

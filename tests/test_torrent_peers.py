"""The torrent sink's contract on Transmission 3.00/4.1.4 and Deluge 2.0.3/2.2.0, real daemons.

The same behaviour the qBittorrent tests ask of qBittorrent: a published port is set and
read back; a client that restarts on another port is repaired by the next check; a wrong
password is latched (counted on the client's side: no lockout); a client that is down at
start is synced once it is up. Each peer runs in a network namespace of its own
(tests/fixtures/peersroot.py); "listening" is what ``ss`` shows inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pia_mqtt.core.model import EventKind, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.torrent.deluge import DelugeClient
from pia_mqtt.torrent.sink import DEFAULT_MAX_FAILED_LOGINS, TorrentSink
from pia_mqtt.torrent.transmission import TransmissionClient
from tests.fixtures.common import RecordingInbox, eventually
from tests.test_qbittorrent import T0, FakeClock, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.torrent.sink import TorrentClient
    from tests.fixtures.deluge import DelugeFactory
    from tests.fixtures.transmission import TransmissionFactory

WRONG = "not-the-password"
START_PORT = 51413
WANTED = 47001
DRIFTED = 47002

pytestmark = pytest.mark.netns


@dataclass
class Peer:
    """One real peer behind a uniform face: how to reach, restart and inspect it."""

    key: str  # the sink's name: transmission / deluge
    peer: Any
    client: Callable[[str], TorrentClient]  # password -> a client of ours
    restart_on: Callable[[int], None]  # restart the client so that it listens on this port
    start: Callable[[], None]

    def listening(self) -> set[int]:
        """TCP ports that really listen in the peer's namespace."""
        listening: set[int] = self.peer.ns.listening()
        return listening

    def failed_logins(self) -> int:
        """Logins the peer itself counted as refused."""
        count: int = self.peer.failed_logins()
        return count


PEERS = ["transmission-3.00", "transmission-4.1", "deluge-2.0.3", "deluge-2.2.0"]


@pytest.fixture(params=PEERS)
def make_peer(
    request: pytest.FixtureRequest,
    transmission_factory: TransmissionFactory,
    deluge_factory: DelugeFactory,
) -> Callable[..., Peer]:
    """Build (``start=False``: only configure) one of the four real peers."""
    kind, version = str(request.param).split("-", 1)

    def make(*, start: bool = True) -> Peer:
        if kind == "transmission":
            t = transmission_factory(version, start=start, peer_port=START_PORT)
            return Peer(
                "transmission",
                t,
                lambda password: TransmissionClient(t.url, username=t.user, password=password),
                lambda port: t.restart(peer_port=port),
                t.start,
            )
        d = deluge_factory(version, start=start, listen_port=START_PORT)
        return Peer(
            "deluge",
            d,
            lambda password: DelugeClient(d.url, password=password),
            lambda port: d.restart_daemon(listen_port=port),
            d.start,
        )

    return make


def sink_for(peer: Peer, password: str, inbox: RecordingInbox, clock: FakeClock) -> TorrentSink:
    """A sink with a fake clock around a fresh client of ours."""
    return TorrentSink(peer.client(password), inbox, check_interval=1, clock=clock)


def test_published_port_is_set_read_back_and_really_listened_on(
    make_peer: Callable[..., Peer], inbox: RecordingInbox
) -> None:
    """publish sets the port, reports in_sync with a <client>_synced event, and it listens."""
    peer = make_peer()
    sink = sink_for(peer, peer.peer.password, inbox, FakeClock())
    try:
        run(sink, "publish", WANTED)
        run(sink, "check", WANTED)  # no drift: nothing set again, no second event
    finally:
        sink.close()
    assert inbox.health == SinkHealth(state=SyncState.IN_SYNC, port=WANTED, last_sync=T0)
    assert [(EventKind(f"{peer.key}_synced"), WANTED, START_PORT)] == [
        (e.kind, e.port, e.data["previous_port"]) for e in inbox.events
    ]
    assert WANTED in peer.listening()
    assert START_PORT not in peer.listening()


def test_restart_on_another_port_is_repaired_by_the_next_check(
    make_peer: Callable[..., Peer], inbox: RecordingInbox
) -> None:
    """The client comes back on another port (a new session, Deluge's Web UI disconnected)."""
    peer = make_peer()
    sink = sink_for(peer, peer.peer.password, inbox, FakeClock())
    try:
        run(sink, "publish", WANTED)
        peer.restart_on(DRIFTED)
        assert DRIFTED in peer.listening()
        run(sink, "check", WANTED)
    finally:
        sink.close()
    assert WANTED in peer.listening()
    assert DRIFTED not in peer.listening()
    last = inbox.events[-1]
    assert (EventKind(f"{peer.key}_synced"), WANTED, DRIFTED) == (
        last.kind,
        last.port,
        last.data["previous_port"],
    )
    assert inbox.health.state == SyncState.IN_SYNC


def test_a_tunnel_change_makes_the_client_open_a_new_listening_socket(
    make_peer: Callable[..., Peer], inbox: RecordingInbox
) -> None:
    """Same port after a tunnel change (tunnel_epoch bumped): a new socket, still in sync."""
    peer = make_peer()
    sink = sink_for(peer, peer.peer.password, inbox, FakeClock())
    try:
        run(sink, "publish", WANTED)
        before = peer.peer.ns.listening_sockets()[WANTED]
        run(sink, "check", WANTED)  # an ordinary check leaves the socket alone
        assert before == peer.peer.ns.listening_sockets()[WANTED]
        sink.publish(Snapshot(status=Status.ACTIVE, updated_at=T0, port=WANTED, tunnel_epoch=1))
        assert sink.drain(15)
    finally:
        sink.close()
    after = peer.peer.ns.listening_sockets()
    assert WANTED in after
    assert before != after[WANTED]
    assert (SyncState.IN_SYNC, WANTED) == (inbox.health.state, inbox.health.port)


def test_wrong_password_is_latched_after_two_refused_logins(
    make_peer: Callable[..., Peer], inbox: RecordingInbox
) -> None:
    """Two refused logins in all, however many checks and hours follow; the port is untouched."""
    peer = make_peer()
    clock = FakeClock()
    sink = sink_for(peer, WRONG, inbox, clock)
    try:
        run(sink, "publish", WANTED)
        assert inbox.health.state == SyncState.AUTH_FAILED
        for _ in range(3):  # inside the latch: nothing is sent
            clock.advance(minutes=3)
            run(sink, "check", WANTED)
        clock.advance(minutes=2)
        run(sink, "check", WANTED)
        for _ in range(4):  # given up: nothing more, however long we wait
            clock.advance(hours=2)
            run(sink, "check", WANTED)
    finally:
        sink.close()
    eventually(lambda: peer.failed_logins() >= DEFAULT_MAX_FAILED_LOGINS, timeout=5)
    assert peer.failed_logins() == DEFAULT_MAX_FAILED_LOGINS
    assert inbox.health.state == SyncState.AUTH_FAILED
    assert "gave up" in (inbox.health.error or "")
    assert [EventKind(f"{peer.key}_failed")] * 2 == inbox.kinds()
    assert START_PORT in peer.listening()
    texts = [e.message for e in inbox.events] + [h.error or "" for _, h in inbox.reports]
    assert [t for t in texts if WRONG in t or peer.peer.password in t] == []


def test_client_down_at_start_is_synced_once_it_is_up(
    make_peer: Callable[..., Peer], inbox: RecordingInbox
) -> None:
    """Unreachable first (one event, the variable named), in sync at the first check after."""
    peer = make_peer(start=False)
    sink = sink_for(peer, peer.peer.password, inbox, FakeClock())
    try:
        run(sink, "publish", WANTED)
        assert inbox.health.state == SyncState.UNREACHABLE
        assert f"{peer.key.upper()}_URL" in (inbox.health.error or "")
        run(sink, "check", WANTED)
        peer.start()
        run(sink, "check", WANTED)
    finally:
        sink.close()
    assert [EventKind(f"{peer.key}_failed"), EventKind(f"{peer.key}_synced")] == inbox.kinds()
    assert (SyncState.IN_SYNC, WANTED) == (inbox.health.state, inbox.health.port)
    assert WANTED in peer.listening()

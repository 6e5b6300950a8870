"""qBittorrent: the Web API client and the sink, against real qbittorrent-nox 4.5.2 and 5.3.0.

Every test that starts a qBittorrent runs on both versions (4.5.2 from Debian 12, 5.3.0
from the Debian 13 peers root). tests/fake_qbt52.py stays for what a real server cannot be
made to show on demand (a hung server, a setPreferences that does not take).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import socketserver
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests

from pia_mqtt.core.model import EventKind, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.errors import (
    QbittorrentAuthError,
    QbittorrentBannedError,
    QbittorrentHostHeaderError,
    QbittorrentUnavailableError,
)
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from pia_mqtt.torrent.qbittorrent_replies import CONNECTION_STATES
from pia_mqtt.torrent.sink import TorrentSink
from tests.fake_qbt52 import FakeQbittorrent52
from tests.fixtures.common import RecordingInbox, eventually, free_port
from tests.fixtures.qbittorrent import (
    MAX_FAILED_LOGINS,
    PASSWORD,
    USER,
    VERSIONS,
    QbittorrentFactory,
    QbittorrentProcess,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WRONG = "not-the-password"


def without_status(health: SinkHealth) -> SinkHealth:
    """The health minus connection_status, after checking that it holds one of its words.

    Right after a port change 5.3 may say ``disconnected`` (no listening socket for a moment)
    where 4.5.2 says ``firewalled``; the connectable tests pin the values down.
    """
    assert dict(health.details)["connection_status"] in CONNECTION_STATES
    return dataclasses.replace(health, details=())


class FakeClock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        """Return the fake now."""
        return self.now

    def advance(self, **kwargs: float) -> None:
        """Move the fake now forward (timedelta keywords)."""
        self.now += timedelta(**kwargs)


def snapshot(port: int | None) -> Snapshot:
    """Build an engine snapshot with only what the sink reads."""
    return Snapshot(status=Status.ACTIVE, updated_at=T0, port=port)


def make_sink(
    client: QbittorrentClient, inbox: RecordingInbox, clock: FakeClock | None = None
) -> TorrentSink:
    """Build a sink with a 1 s check interval on a fake clock."""
    return TorrentSink(client, inbox, check_interval=1, clock=clock or FakeClock())


def run(sink: TorrentSink, action: str, port: int | None) -> None:
    """Call publish/check as the engine does and wait until the worker is idle."""
    getattr(sink, action)(snapshot(port))
    assert sink.drain(15)


def other_port(*taken: int) -> int:
    """Return a free port different from ``taken``."""
    port = free_port()
    while port in taken:
        port = free_port()
    return port


class PortForwarder(socketserver.ThreadingTCPServer):
    """A Docker-style port mapping on loopback: accept on one port, relay to another."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, target: int) -> None:
        self.address = address
        self.target = target
        super().__init__(("127.0.0.1", 0), _Relay)
        self.port = int(self.server_address[1])


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, PortForwarder)
        upstream_address = (self.server.address, self.server.target)
        with socket.create_connection(upstream_address, timeout=5) as upstream:

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(upstream, self.request))
            back.start()
            pump(self.request, upstream)
            back.join(5)


@pytest.fixture(params=VERSIONS)
def qbittorrent_version(request: pytest.FixtureRequest) -> str:
    """Run every real-qBittorrent test here on 4.5.2 and on 5.3.0."""
    version: str = request.param
    return version


@pytest.fixture
def qbittorrent_isolated() -> bool:
    """Each qBittorrent here runs in a namespace of its own: nothing it sends can leave."""
    return True


def test_set_listen_port_is_read_back_and_stored_by_qbittorrent(qbittorrent: QbittorrentProcess):
    """set_listen_port turns random_port off and returns the port qBittorrent reports."""
    wanted = other_port(qbittorrent.listen_port)
    qbittorrent.set_preferences({"random_port": True})
    client = QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD)
    try:
        assert client.version() == f"v{qbittorrent.version}"
        assert client.listen_port() == 0  # what 4.5.2 and 5.3 report while random_port is on
        assert client.set_listen_port(wanted) == wanted
    finally:
        client.close()
    prefs = qbittorrent.preferences()
    assert (wanted, False) == (prefs["listen_port"], prefs["random_port"])
    assert client.logins == 1


def test_publish_sets_port_then_follows_a_port_change(
    qbittorrent: QbittorrentProcess, inbox: RecordingInbox
):
    """A published port is set, reported in_sync with an event; a new PIA port follows."""
    first = other_port(qbittorrent.listen_port)
    second = other_port(qbittorrent.listen_port, first)
    clock = FakeClock()
    sink = make_sink(
        QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD), inbox, clock
    )
    try:
        run(sink, "publish", first)
        assert without_status(inbox.health) == SinkHealth(
            state=SyncState.IN_SYNC, port=first, last_sync=T0
        )
        assert qbittorrent.preferences()["listen_port"] == first
        run(sink, "publish", first)  # unchanged port: nothing to do, nothing sent
        run(sink, "check", first)  # no drift: in_sync reported again, no event
        clock.advance(seconds=30)
        run(sink, "publish", second)
        assert qbittorrent.preferences()["listen_port"] == second
        expected = [
            (EventKind.QBITTORRENT_SYNCED, first, qbittorrent.listen_port),
            (EventKind.QBITTORRENT_SYNCED, second, first),
        ]
        assert expected == [(e.kind, e.port, e.data["previous_port"]) for e in inbox.events]
        assert without_status(inbox.health) == SinkHealth(
            state=SyncState.IN_SYNC, port=second, last_sync=T0 + timedelta(seconds=30)
        )
        assert len(inbox.reports) == 3
    finally:
        sink.close()


def test_restart_with_torrenting_port_is_repaired_by_the_next_check(
    qbittorrent: QbittorrentProcess, inbox: RecordingInbox
):
    """A restart with --torrenting-port makes qBittorrent drift; one check sets it back."""
    wanted = other_port(qbittorrent.listen_port)
    client = QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD)
    sink = make_sink(client, inbox)
    try:
        run(sink, "publish", wanted)
        drifted = other_port(wanted, qbittorrent.listen_port)
        qbittorrent.restart(torrenting_port=drifted)
        assert qbittorrent.preferences()["listen_port"] == drifted
        run(sink, "check", wanted)
        assert qbittorrent.preferences()["listen_port"] == wanted
        assert inbox.events[-1].kind == EventKind.QBITTORRENT_SYNCED
        assert (wanted, drifted) == (inbox.events[-1].port, inbox.events[-1].data["previous_port"])
        assert inbox.health.state == SyncState.IN_SYNC
        assert client.logins == 2  # the restart dropped the session: exactly one re-login
    finally:
        sink.close()


def test_session_expired_by_a_restart_logs_in_once_and_succeeds(qbittorrent: QbittorrentProcess):
    """After qBittorrent restarts, the next call gets 403, logs in once and retries."""
    client = QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD)
    try:
        client.login()
        assert client.listen_port() == qbittorrent.listen_port
        qbittorrent.restart()
        assert client.listen_port() == qbittorrent.listen_port
        assert (client.logins, client.failed_logins) == (2, 0)
    finally:
        client.close()


def test_qbittorrent_down_at_start_is_synced_once_it_comes_up(
    qbittorrent_factory: QbittorrentFactory, inbox: RecordingInbox
):
    """Unreachable is reported once as an event; the first check after start-up syncs."""
    qbt = qbittorrent_factory(start=False)
    wanted = other_port(qbt.listen_port)
    sink = make_sink(QbittorrentClient(qbt.url, username=USER, password=PASSWORD), inbox)
    try:
        run(sink, "publish", wanted)
        assert inbox.health.state == SyncState.UNREACHABLE
        assert "QBITTORRENT_HOST" in (inbox.health.error or "")
        run(sink, "check", wanted)
        assert inbox.kinds() == [EventKind.QBITTORRENT_FAILED]
        qbt.start()
        run(sink, "check", wanted)
        assert qbt.preferences()["listen_port"] == wanted
        assert inbox.kinds() == [EventKind.QBITTORRENT_FAILED, EventKind.QBITTORRENT_SYNCED]
        assert (inbox.health.state, inbox.health.port) == (SyncState.IN_SYNC, wanted)
    finally:
        sink.close()


def test_wrong_password_latches_and_never_reaches_the_ban(
    qbittorrent: QbittorrentProcess, inbox: RecordingInbox, caplog: pytest.LogCaptureFixture
):
    """Refused logins latch: no retry before auth_retry, a hard cap, no ban, one ERROR line."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    client = QbittorrentClient(qbittorrent.url, username=USER, password=WRONG)
    sink = make_sink(client, inbox, clock)
    wanted = other_port(qbittorrent.listen_port)
    try:
        run(sink, "publish", wanted)
        assert inbox.health.state == SyncState.AUTH_FAILED
        assert eventually(lambda: qbittorrent.failed_logins() == 1)
        for _ in range(3):  # checks inside the latch send nothing
            clock.advance(minutes=3)
            run(sink, "check", wanted)
        assert (client.logins, inbox.health.state) == (1, SyncState.AUTH_FAILED)
        clock.advance(minutes=1, seconds=1)
        run(sink, "check", wanted)
        assert client.logins == 2
        assert eventually(lambda: qbittorrent.failed_logins() == 2)
        for _ in range(5):  # the cap is reached: no more logins, however long we wait
            clock.advance(hours=1)
            run(sink, "check", wanted)
        assert client.logins == 2
        assert qbittorrent.failed_logins() < MAX_FAILED_LOGINS
        assert not qbittorrent.banned()
        assert qbittorrent.preferences()["listen_port"] == qbittorrent.listen_port
    finally:
        sink.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "QBITTORRENT_USER" in errors[0]
    assert "QBITTORRENT_PASS" in errors[0]
    assert inbox.kinds() == [EventKind.QBITTORRENT_FAILED, EventKind.QBITTORRENT_FAILED]
    assert "gave up" in (inbox.health.error or "")
    texts = [r.getMessage() for r in caplog.records]
    texts += [e.message for e in inbox.events] + [h.error or "" for _, h in inbox.reports]
    assert [t for t in texts if WRONG in t or PASSWORD in t] == []


def test_login_while_banned_is_reported_as_a_ban(
    qbittorrent_factory: QbittorrentFactory, inbox: RecordingInbox
):
    """A 403 on login (IP banned) is a ban, latched as auth_failed, and not a failed login."""
    qbittorrent = qbittorrent_factory(ban_seconds=600)
    with requests.Session() as other:
        for _ in range(MAX_FAILED_LOGINS):
            reply = other.post(
                f"{qbittorrent.url}/api/v2/auth/login",
                data={"username": USER, "password": WRONG},
                timeout=5,
            )
            refused = (401, "Unauthorized") if qbittorrent.v5 else (200, "Fails.")
            assert (reply.status_code, reply.text) == refused
    client = QbittorrentClient(qbittorrent.url, username=USER, password=PASSWORD)
    with pytest.raises(QbittorrentBannedError, match="banned"):
        client.login()
    assert client.failed_logins == 0
    clock = FakeClock()
    sink = make_sink(client, inbox, clock)
    try:
        run(sink, "publish", 40000)
        assert inbox.health.state == SyncState.AUTH_FAILED
        assert "banned" in (inbox.health.error or "")
        run(sink, "check", 40000)
        assert client.logins == 2
    finally:
        sink.close()


def test_localhost_bypass_needs_no_password(qbittorrent_bypass: QbittorrentProcess):
    """With qBittorrent's localhost auth bypass the client works without ever logging in."""
    qbt = qbittorrent_bypass
    wanted = other_port(qbt.listen_port)
    client = QbittorrentClient(qbt.url, username=USER, password=None)
    try:
        assert client.set_listen_port(wanted) == wanted
    finally:
        client.close()
    assert client.logins == 0
    assert qbt.preferences()["listen_port"] == wanted


def test_no_password_without_bypass_is_an_auth_error_without_a_login(
    qbittorrent: QbittorrentProcess,
):
    """Without a password and without the bypass: a clear auth error, no login sent."""
    client = QbittorrentClient(qbittorrent.url, username=USER, password=None)
    try:
        with pytest.raises(QbittorrentAuthError, match="QBITTORRENT_PASS is not set"):
            client.listen_port()
    finally:
        client.close()
    assert (client.logins, qbittorrent.failed_logins()) == (0, 0)


def test_docker_port_mapping_gives_a_host_header_error(qbittorrent: QbittorrentProcess):
    """Through a port mapping qBittorrent answers 401; the error names QBITTORRENT_HOST."""
    with PortForwarder(qbittorrent.webui_address, qbittorrent.webui_port) as mapping:
        serving = threading.Thread(
            target=mapping.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        serving.start()
        client = QbittorrentClient(
            f"http://127.0.0.1:{mapping.port}", username=USER, password=PASSWORD
        )
        try:
            with pytest.raises(QbittorrentHostHeaderError, match="QBITTORRENT_HOST"):
                client.listen_port()
        finally:
            client.close()
            mapping.shutdown()
            serving.join(5)
    assert qbittorrent.failed_logins() == 0


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_ports_outside_range_are_refused_before_any_request(port: int):
    """set_listen_port never sends 0 or an out-of-range port (qBittorrent would store it)."""
    with FakeQbittorrent52(USER, PASSWORD) as fake:
        client = QbittorrentClient(fake.url, username=USER, password=PASSWORD)
        try:
            with pytest.raises(ValueError, match="refusing"):
                client.set_listen_port(port)
        finally:
            client.close()
        assert fake.state.requests == []


def test_port_zero_or_missing_in_snapshot_does_nothing(inbox: RecordingInbox):
    """While the VPN starts (port None or 0) the sink neither sends nor reports anything."""
    with FakeQbittorrent52(USER, PASSWORD) as fake:
        sink = make_sink(QbittorrentClient(fake.url, username=USER, password=PASSWORD), inbox)
        try:
            for port in (None, 0):
                run(sink, "publish", port)
                run(sink, "check", port)
        finally:
            sink.close()
        assert (fake.state.requests, inbox.reports, inbox.events) == ([], [], [])


def test_setting_that_does_not_take_is_out_of_sync_not_success(inbox: RecordingInbox):
    """A 204 to setPreferences is not trusted: the read-back decides, and it says out_of_sync."""
    with FakeQbittorrent52(USER, PASSWORD) as fake:
        fake.state.ignore_changes = True
        client = QbittorrentClient(fake.url, username=USER, password=PASSWORD)
        sink = make_sink(client, inbox)
        try:
            run(sink, "publish", 51413)
            run(sink, "check", 51413)
        finally:
            sink.close()
        assert inbox.health.state == SyncState.OUT_OF_SYNC
        assert inbox.health.port == 6881
        assert "reports 6881" in (inbox.health.error or "")
        assert inbox.kinds() == [EventKind.QBITTORRENT_FAILED]
        assert fake.state.listen_port == 6881


def test_slow_qbittorrent_never_blocks_publish_or_check(inbox: RecordingInbox):
    """publish/check/close return while the worker waits on a hung qBittorrent."""
    with FakeQbittorrent52(USER, PASSWORD) as fake:
        fake.state.hold = threading.Event()
        client = QbittorrentClient(fake.url, username=USER, password=PASSWORD, timeout=30)
        sink = TorrentSink(client, inbox, check_interval=1, clock=FakeClock(), close_timeout=0.2)
        sink.publish(snapshot(40001))
        eventually(lambda: fake.state.requests)
        for port in (40002, 40003):
            sink.publish(snapshot(port))
            sink.check(snapshot(port))
        assert not sink.drain(0)
        fake.state.hold.set()
        assert sink.drain(15)
        assert fake.state.listen_port == 40003  # coalesced: only the latest port was set
        assert inbox.kinds() == [EventKind.QBITTORRENT_SYNCED, EventKind.QBITTORRENT_SYNCED]
        fake.state.hold = threading.Event()
        sink.check(snapshot(40003))
        eventually(lambda: not sink.drain(0))
        sink.close()  # returns although the worker is stuck in a request
        fake.state.hold.set()
        assert eventually(lambda: not sink._thread.is_alive())


def test_unreachable_host_is_an_unavailable_error():
    """A closed port is QbittorrentUnavailableError naming QBITTORRENT_HOST."""
    client = QbittorrentClient(f"http://127.0.0.1:{free_port()}", username=USER, password=PASSWORD)
    try:
        with pytest.raises(QbittorrentUnavailableError, match="QBITTORRENT_HOST"):
            client.listen_port()
    finally:
        client.close()

"""gluetun's control server, both ways: reading its port, and pushing ours into its firewall."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.core.model import Event, EventKind, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import (
    GluetunAuthError,
    GluetunClient,
    GluetunPortReader,
    GluetunReplyError,
    GluetunUnavailableError,
)
from pia_mqtt.gluetun.push import GluetunPushSink
from tests.fake_gluetun import GET_LEGACY, GET_PF, PUT_PF, FakeGluetun
from tests.fixtures.common import RecordingInbox, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
KEY = "k3y-for-the-control-server"


def clock() -> datetime:
    """Frozen time: events and health compare whole."""
    return T0


def snap(port: int | None) -> Snapshot:
    """Build a snapshot as the engine would publish it."""
    return Snapshot(status=Status.ACTIVE, updated_at=T0, port=port)


@pytest.fixture
def gluetun() -> Iterator[FakeGluetun]:
    """Serve a fake gluetun without auth (as before gluetun had roles)."""
    with FakeGluetun() as fake:
        yield fake


@pytest.fixture
def keyed() -> Iterator[FakeGluetun]:
    """Serve a fake gluetun whose apikey role covers the port-forward routes."""
    with FakeGluetun(api_key=KEY) as fake:
        yield fake


def reader_for(url: str, api_key: str | None = None) -> GluetunPortReader:
    """Build a reader as the engine does for PORT_SOURCE=gluetun."""
    return GluetunPortReader(GluetunClient(url, api_key=api_key, timeout=5.0))


def read_error(reader: GluetunPortReader) -> GluetunError:
    """Return the GluetunError one read raises (and close the reader)."""
    with pytest.raises(GluetunError) as caught:
        reader.read()
    reader.close()
    return caught.value


# --- reading the port (PORT_SOURCE=gluetun) ---------------------------------------------


def test_port_zero_while_gluetun_starts_means_not_forwarded_yet() -> None:
    """Before its loop runs gluetun says ports null / port 0: read() gives None, not 0."""
    with FakeGluetun(started=False) as fake:
        reader = reader_for(fake.url)
        before_start = reader.read()
        fake.start()
        started_without_port = reader.read()
        reader.close()
    assert (before_start, started_without_port) == (None, None)


def test_reads_the_forwarded_port_and_follows_its_changes(gluetun: FakeGluetun) -> None:
    """{"port": N, "ports": [N]} gives N; a new port is seen at the next read."""
    reader = reader_for(gluetun.url)
    gluetun.forward(51413)
    first = reader.read()
    gluetun.forward(40001)
    second = reader.read()
    reader.close()
    assert (first, second) == (51413, 40001)
    assert gluetun.requests == [GET_PF, GET_PF]


def test_older_reply_shape_and_several_ports_give_the_first() -> None:
    """Older gluetun answers {"port": N} or {"ports": [...]}: both are understood."""
    with FakeGluetun(older_shape=True) as fake:
        reader = reader_for(fake.url)
        fake.forward(30000)
        single = reader.read()
        fake.forward(30001, 30002)
        several = reader.read()
        reader.close()
    assert (single, several) == (30000, 30001)


def test_falls_back_to_the_legacy_route_when_gluetun_lacks_the_new_one() -> None:
    """A gluetun without /v1/portforward (400 not found) is read on /v1/openvpn/portforwarded."""
    with FakeGluetun(legacy_only=True) as fake:
        fake.forward(45678)
        reader = reader_for(fake.url)
        ports = [reader.read(), reader.read()]
        reader.close()
    assert ports == [45678, 45678]
    # The legacy route is remembered: the new one is asked only once.
    assert fake.requests == [GET_PF, GET_LEGACY, GET_LEGACY]


def test_default_auth_roles_leave_only_the_legacy_route_public() -> None:
    """The default 'public' role of gluetun covers the legacy GET only: used without a key."""
    with FakeGluetun(
        api_key=KEY, key_routes=frozenset(), public_routes=frozenset({GET_LEGACY})
    ) as fake:
        fake.forward(23456)
        reader = reader_for(fake.url)
        port = reader.read()
        reader.close()
    assert port == 23456


def test_api_key_travels_in_the_x_api_key_header(keyed: FakeGluetun) -> None:
    """With GLUETUN_API_KEY set the protected route answers."""
    keyed.forward(34567)
    reader = reader_for(keyed.url, KEY)
    port = reader.read()
    reader.close()
    assert port == 34567
    assert keyed.requests == [GET_PF]


def test_wrong_api_key_is_an_auth_error_naming_the_variable_not_the_key(keyed: FakeGluetun) -> None:
    """401 with a wrong key: GluetunAuthError names GLUETUN_API_KEY and the role routes."""
    error = read_error(reader_for(keyed.url, "wrong-key-value"))
    assert isinstance(error, GluetunAuthError)
    text = str(error)
    assert "GLUETUN_API_KEY was not accepted" in text
    assert '"GET /v1/portforward" and "PUT /v1/portforward"' in text
    assert "wrong-key-value" not in text
    assert KEY not in text


def test_missing_api_key_is_an_auth_error_saying_none_is_set(keyed: FakeGluetun) -> None:
    """401 without a key: the message says GLUETUN_API_KEY is not set."""
    error = read_error(reader_for(keyed.url))
    assert isinstance(error, GluetunAuthError)
    assert "HTTP 401, no GLUETUN_API_KEY set" in str(error)


def test_unreachable_control_server_names_gluetun_control_url() -> None:
    """Nothing listening: GluetunUnavailableError naming GLUETUN_CONTROL_URL."""
    url = f"http://127.0.0.1:{free_port()}"
    error = read_error(reader_for(url))
    assert isinstance(error, GluetunUnavailableError)
    assert f"cannot reach gluetun's control server at {url} for GET /v1/portforward" in str(error)
    assert "check GLUETUN_CONTROL_URL" in str(error)


def test_a_url_that_is_not_the_control_server_is_a_reply_error(gluetun: FakeGluetun) -> None:
    """A wrong path in GLUETUN_CONTROL_URL: the first route's answer is reported."""
    error = read_error(reader_for(gluetun.url + "/wrong"))
    assert isinstance(error, GluetunReplyError)
    assert str(error).startswith(
        f"gluetun's control server at {gluetun.url}/wrong answered HTTP 400 to GET /v1/portforward"
    )


def test_credentials_in_the_url_never_show_in_messages() -> None:
    """Basic-auth user:password@ written into GLUETUN_CONTROL_URL is left out of errors."""
    url = f"http://someone:s3cret-pw@127.0.0.1:{free_port()}"
    error = read_error(reader_for(url))
    assert "s3cret-pw" not in str(error)
    assert "someone" not in str(error)


def test_client_refuses_to_push_port_zero_or_nothing(gluetun: FakeGluetun) -> None:
    """set_forwarded_ports([0]) and ([]) raise before any request."""
    client = GluetunClient(gluetun.url, api_key=None)
    for ports in ([0], [], [70000]):
        with pytest.raises(ValueError, match="refusing to push invalid ports"):
            client.set_forwarded_ports(ports)
    client.close()
    assert gluetun.requests == []


# --- pushing our port (PIA mode with GLUETUN_CONTROL_URL) -------------------------------


def push_sink(
    fake: FakeGluetun, api_key: str | None = None
) -> tuple[GluetunPushSink, RecordingInbox]:
    """Build a push sink as the engine does, with a recording inbox."""
    inbox = RecordingInbox()
    client = GluetunClient(fake.url, api_key=api_key)
    return GluetunPushSink(client, inbox, check_interval=30.0, clock=clock), inbox


def in_sync(port: int) -> tuple[str, SinkHealth]:
    """Build the report of gluetun holding ``port``."""
    return ("gluetun", SinkHealth(SyncState.IN_SYNC, port=port, last_sync=T0))


def pushed(port: int, why: str) -> Event:
    """Build the event of a successful PUT."""
    return Event(
        EventKind.GLUETUN_PUSHED,
        T0,
        f"gluetun opened port {port} in its firewall ({why})",
        port=port,
    )


def test_pushes_every_new_port_once(keyed: FakeGluetun) -> None:
    """Each port change is one PUT {"ports": [port]}; the same port again sends nothing."""
    sink, inbox = push_sink(keyed, KEY)
    sink.publish(snap(50000))
    assert sink.drain(10)
    sink.publish(snap(50000))
    sink.publish(snap(50001))
    assert sink.drain(10)
    sink.close()
    assert keyed.pushes == [[50000], [50001]]
    assert keyed.held() == [50001]
    assert inbox.snapshot() == (
        [in_sync(50000), in_sync(50001)],
        [pushed(50000, "the port changed"), pushed(50001, "the port changed")],
    )


def test_check_repushes_after_gluetun_restarts(keyed: FakeGluetun) -> None:
    """A check finds gluetun forgot the port (restart) and PUTs it again."""
    sink, inbox = push_sink(keyed, KEY)
    sink.publish(snap(41000))
    assert sink.drain(10)
    sink.check(snap(41000))
    assert sink.drain(10)
    keyed.restart()
    sink.check(snap(41000))
    assert sink.drain(10)
    sink.close()
    assert keyed.pushes == [[41000], [41000]]
    assert keyed.requests == [PUT_PF, GET_PF, GET_PF, PUT_PF]
    assert keyed.held() == [41000]
    _, events = inbox.snapshot()
    assert events == [
        pushed(41000, "the port changed"),
        pushed(41000, "gluetun held no port (restarted?)"),
    ]


def test_check_takes_back_a_port_gluetun_forwarded_itself(gluetun: FakeGluetun) -> None:
    """A port gluetun forwarded itself is overwritten by ours, with a hint."""
    sink, inbox = push_sink(gluetun)
    sink.publish(snap(42000))
    assert sink.drain(10)
    gluetun.forward(12345)
    sink.check(snap(42000))
    assert sink.drain(10)
    sink.close()
    assert gluetun.held() == [42000]
    _, events = inbox.snapshot()
    assert events[-1].message == (
        "gluetun opened port 42000 in its firewall (gluetun held [12345] (restarted?); if "
        "gluetun forwards a port itself, set VPN_PORT_FORWARDING=off there)"
    )


def test_auth_failure_is_reported_once_and_names_the_key_and_role(keyed: FakeGluetun) -> None:
    """Wrong key: AUTH_FAILED health and one GLUETUN_FAILED event, however many checks."""
    sink, inbox = push_sink(keyed, "not-the-key")
    sink.publish(snap(43000))
    assert sink.drain(10)
    for _ in range(3):
        sink.check(snap(43000))
        assert sink.drain(10)
    sink.close()
    reports, events = inbox.snapshot()
    assert keyed.pushes == []
    # Health follows the latest error text (the PUT, then the checks' GET); no repeats.
    assert [(name, h.state, h.port) for name, h in reports] == [
        ("gluetun", SyncState.AUTH_FAILED, 43000),
        ("gluetun", SyncState.AUTH_FAILED, 43000),
    ]
    error = reports[0][1].error or ""
    for method, (_, health) in zip(("PUT", "GET"), reports, strict=True):
        assert (health.error or "").startswith(
            f"gluetun's control server at {keyed.url} refused {method} /v1/portforward (HTTP "
            "401, GLUETUN_API_KEY was not accepted): set GLUETUN_API_KEY to the API key of a role"
        )
        assert "not-the-key" not in (health.error or "")
    assert [(e.kind, e.message, e.port) for e in events] == [
        (EventKind.GLUETUN_FAILED, error, 43000)
    ]


def test_not_started_gluetun_is_retried_at_the_next_check() -> None:
    """PUT before gluetun's loop runs (500): OUT_OF_SYNC, then pushed at a later check."""
    with FakeGluetun(started=False) as fake:
        sink, inbox = push_sink(fake)
        sink.publish(snap(44000))
        assert sink.drain(10)
        failed_reports, _ = inbox.snapshot()
        fake.start()
        sink.check(snap(44000))
        assert sink.drain(10)
        sink.close()
    assert fake.held() == [44000]
    assert fake.pushes == [[44000], [44000]]
    assert failed_reports[0][1].state == SyncState.OUT_OF_SYNC
    assert "(HTTP 500: failed setting forwarded ports)" in (failed_reports[0][1].error or "")
    reports, events = inbox.snapshot()
    assert reports[-1] == in_sync(44000)
    assert [e.kind for e in events] == [EventKind.GLUETUN_FAILED, EventKind.GLUETUN_PUSHED]


def test_unreachable_gluetun_is_reported_unreachable() -> None:
    """Connection refused: UNREACHABLE naming GLUETUN_CONTROL_URL."""
    inbox = RecordingInbox()
    client = GluetunClient(f"http://127.0.0.1:{free_port()}", api_key=None)
    sink = GluetunPushSink(client, inbox, clock=clock)
    sink.publish(snap(45000))
    assert sink.drain(10)
    sink.close()
    reports, _ = inbox.snapshot()
    assert [(h.state, h.port) for _, h in reports] == [(SyncState.UNREACHABLE, 45000)]
    assert "check GLUETUN_CONTROL_URL" in (reports[0][1].error or "")


def test_never_pushes_port_zero_or_no_port(gluetun: FakeGluetun) -> None:
    """Snapshots without a valid port send nothing, not even a check."""
    sink, inbox = push_sink(gluetun)
    for port in (None, 0, 70000):
        sink.publish(snap(port))
        sink.check(snap(port))
    assert sink.drain(10)
    sink.close()
    assert gluetun.requests == []
    assert inbox.snapshot() == ([], [])
    assert sink.check_interval == 30.0

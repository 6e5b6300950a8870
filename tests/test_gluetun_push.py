"""Pushing our port into gluetun's firewall (PIA mode with GLUETUN_CONTROL_URL).

Against the three gluetun behaviours of tests/fake_gluetun.py: ``custom`` accepts the PUT,
a tagged release and a development build whose provider forwards itself refuse it; each
refusal is reported once with its fix, retried at most once per check interval, and at
once when gluetun is seen to restart.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.core.model import Event, EventKind, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.gluetun.client import GluetunClient
from pia_mqtt.gluetun.push import GluetunPushSink
from tests.fake_gluetun import (
    GET_PF,
    NO_PUT_ROUTE,
    PROVIDER_FORWARDS,
    PUT_PF,
    Behaviour,
    FakeGluetun,
)
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
    """Serve a fake gluetun (custom provider) without auth."""
    with FakeGluetun() as fake:
        yield fake


@pytest.fixture
def keyed() -> Iterator[FakeGluetun]:
    """Serve a fake gluetun (custom provider) whose apikey role covers the routes."""
    with FakeGluetun(api_key=KEY) as fake:
        yield fake


class Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """Read the clock."""
        return self.now


def push_sink(
    fake: FakeGluetun, api_key: str | None = None, monotonic: Monotonic | None = None
) -> tuple[GluetunPushSink, RecordingInbox]:
    """Build a push sink as the engine does, with a recording inbox."""
    inbox = RecordingInbox()
    client = GluetunClient(fake.url, api_key=api_key)
    sink = GluetunPushSink(
        client, inbox, check_interval=30.0, clock=clock, monotonic=monotonic or Monotonic()
    )
    return sink, inbox


def step(sink: GluetunPushSink, port: int, *, check: bool = True) -> None:
    """One check (or one port change) and wait until the sink is done with it."""
    if check:
        sink.check(snap(port))
    else:
        sink.publish(snap(port))
    assert sink.drain(10)


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
    keyed.restart_tunnel()
    sink.check(snap(41000))
    assert sink.drain(10)
    sink.close()
    assert keyed.pushes == [[41000], [41000]]
    assert keyed.requests == [PUT_PF, GET_PF, GET_PF, PUT_PF]
    assert keyed.held() == [41000]
    _, events = inbox.snapshot()
    assert events == [
        pushed(41000, "the port changed"),
        pushed(41000, "gluetun held no port (its tunnel restarted?)"),
    ]


def test_check_takes_back_a_port_someone_else_pushed(gluetun: FakeGluetun) -> None:
    """Another port in gluetun (someone else's PUT) is overwritten by ours at the next check."""
    sink, inbox = push_sink(gluetun)
    step(sink, 42000, check=False)
    gluetun.forward(12345)
    step(sink, 42000)
    sink.close()
    assert gluetun.held() == [42000]
    _, events = inbox.snapshot()
    assert events[-1].message == (
        "gluetun opened port 42000 in its firewall (gluetun held [12345] (its tunnel restarted?))"
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
    # The PUT's message also names the route for a role and what tagged releases do.
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


def test_dev_build_before_its_tunnel_is_up_is_retried_at_the_next_check() -> None:
    """500 while GET says ports null (tunnel not up yet): OUT_OF_SYNC, pushed at a later check."""
    with FakeGluetun(started=False) as fake:
        sink, inbox = push_sink(fake)
        step(sink, 44000, check=False)
        failed_reports, _ = inbox.snapshot()
        fake.start()
        step(sink, 44000)
        sink.close()
    assert fake.held() == [44000]
    assert fake.pushes == [[44000], [44000]]
    assert failed_reports[0][1] == SinkHealth(
        SyncState.OUT_OF_SYNC,
        port=44000,
        error=(
            f"gluetun's control server at {fake.url} refused PUT /v1/portforward (HTTP 500: "
            "failed setting forwarded ports): gluetun's tunnel has not come up yet (it forwards "
            "nothing); trying again at the next check"
        ),
    )
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


# --- the refusals ----------------------------------------------------------------------


def test_tagged_release_refusal_is_reported_once_with_its_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """400 "method PUT not supported": REFUSED with the fix, one event, one log line."""
    monotonic = Monotonic()
    with FakeGluetun(Behaviour.TAGGED, api_key=KEY) as fake:
        sink, inbox = push_sink(fake, KEY, monotonic)
        with caplog.at_level(logging.DEBUG, logger="pia_mqtt.gluetun"):
            step(sink, 46000, check=False)
            for _ in range(3):
                monotonic.now += 30
                step(sink, 46000)
        sink.close()
    error = (
        f"gluetun's control server at {fake.url} refused PUT /v1/portforward (HTTP 400: "
        f"method PUT not supported): {NO_PUT_ROUTE}"
    )
    reports, events = inbox.snapshot()
    assert reports == [("gluetun", SinkHealth(SyncState.REFUSED, port=46000, error=error))]
    assert events == [Event(EventKind.GLUETUN_FAILED, T0, error, port=46000)]
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert loud == [error]
    # One PUT per check interval: the first one and one per 30 s check.
    assert fake.pushes == []  # the handler refuses before reading the body
    assert fake.count(PUT_PF) == 4


def test_self_forwarding_provider_refusal_is_reported_once_with_its_fix() -> None:
    """500 "failed setting forwarded ports" with a started service: REFUSED with the fix."""
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as fake:
        sink, inbox = push_sink(fake)
        step(sink, 47000, check=False)
        step(sink, 47000)
        sink.close()
    error = (
        f"gluetun's control server at {fake.url} refused PUT /v1/portforward (HTTP 500: "
        f"failed setting forwarded ports): {PROVIDER_FORWARDS}"
    )
    reports, events = inbox.snapshot()
    assert reports == [("gluetun", SinkHealth(SyncState.REFUSED, port=47000, error=error))]
    assert [(e.kind, e.message) for e in events] == [(EventKind.GLUETUN_FAILED, error)]
    # The 500 is told apart from "tunnel not up yet" by one GET; the check is a GET only
    # (less than an interval since the PUT).
    assert fake.requests == [PUT_PF, GET_PF, GET_PF]


def test_refused_port_changes_wait_for_the_interval() -> None:
    """While refused a new port is not PUT before GLUETUN_CHECK_INTERVAL; health shows it."""
    monotonic = Monotonic()
    with FakeGluetun(Behaviour.TAGGED) as fake:
        sink, inbox = push_sink(fake, monotonic=monotonic)
        step(sink, 48000, check=False)
        monotonic.now += 10
        step(sink, 48001, check=False)
        puts_before_interval = fake.count(PUT_PF)
        monotonic.now += 20
        step(sink, 48001)
        sink.close()
    reports, events = inbox.snapshot()
    assert (puts_before_interval, fake.count(PUT_PF)) == (1, 2)
    assert [(h.state, h.port) for _, h in reports] == [
        (SyncState.REFUSED, 48000),
        (SyncState.REFUSED, 48001),
    ]
    assert len(events) == 1


def test_refusal_is_tried_again_at_once_when_gluetun_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unreachable then answering again is a restart: PUT at once, not an interval later."""
    monotonic = Monotonic()
    with FakeGluetun(Behaviour.TAGGED) as fake:
        sink, inbox = push_sink(fake, monotonic=monotonic)
        step(sink, 49000, check=False)
        fake.stop_server()
        monotonic.now += 1
        step(sink, 49000)
        # The operator replaced gluetun by a build that accepts the port (custom provider).
        fake.behaviour = Behaviour.CUSTOM
        fake.restart_process()
        fake.start()
        monotonic.now += 1
        with caplog.at_level(logging.INFO, logger="pia_mqtt.gluetun"):
            step(sink, 49000)
        sink.close()
    reports, events = inbox.snapshot()
    assert [h.state for _, h in reports] == [
        SyncState.REFUSED,
        SyncState.UNREACHABLE,
        SyncState.IN_SYNC,
    ]
    assert fake.held() == [49000]
    assert [e.kind for e in events] == [
        EventKind.GLUETUN_FAILED,
        EventKind.GLUETUN_FAILED,
        EventKind.GLUETUN_PUSHED,
    ]
    assert events[-1].message == (
        "gluetun opened port 49000 in its firewall (gluetun restarted: its control server "
        "was unreachable and answers again)"
    )
    assert f"gluetun at {fake.url} now accepts PUT /v1/portforward" in caplog.text


def test_a_fresh_gluetun_process_with_the_same_refusal_is_not_reported_again() -> None:
    """A restart (ports null) is tried at once, and again when its tunnel is up; no new report."""
    monotonic = Monotonic()
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as fake:
        sink, inbox = push_sink(fake, monotonic=monotonic)
        step(sink, 50500, check=False)
        fake.restart_process()
        monotonic.now += 1
        step(sink, 50500)
        fake.start()
        monotonic.now += 1
        step(sink, 50500)
        sink.close()
    reports, events = inbox.snapshot()
    assert [h.state for _, h in reports] == [
        SyncState.REFUSED,
        SyncState.OUT_OF_SYNC,  # PUT while the fresh process has no tunnel yet
        SyncState.REFUSED,
    ]
    assert reports[0] == reports[2]
    # The refusal is announced once; the "not up yet" failure is its own, passing state.
    assert [e.message for e in events] == [reports[0][1].error, reports[1][1].error]
    assert fake.count(PUT_PF) == 3


def test_put_401_names_the_role_route_and_what_tagged_releases_do() -> None:
    """A role without "PUT /v1/portforward": 401 names the route, the file and the way out."""
    with FakeGluetun(Behaviour.TAGGED, api_key=KEY, key_routes=frozenset({GET_PF})) as fake:
        sink, inbox = push_sink(fake, KEY)
        step(sink, 51000, check=False)
        sink.close()
    assert inbox.health == SinkHealth(
        SyncState.AUTH_FAILED,
        port=51000,
        error=(
            f"gluetun's control server at {fake.url} refused PUT /v1/portforward (HTTP 401, "
            "GLUETUN_API_KEY was not accepted): set GLUETUN_API_KEY to the API key of a role "
            'with auth = "apikey" whose routes include "PUT /v1/portforward", in gluetun\'s '
            "control-server auth config (HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH, e.g. "
            "/gluetun/auth/config.toml) (gluetun v3.41.1 and older refuse that route: set "
            "VPN_PORT_FORWARDING=on in gluetun and PORT_SOURCE=gluetun here)"
        ),
    )


def test_custom_provider_forgets_the_port_on_a_tunnel_restart_and_gets_it_again(
    gluetun: FakeGluetun,
) -> None:
    """custom: PUT 200 opens the port; after a tunnel restart the next check PUTs it again."""
    sink, inbox = push_sink(gluetun)
    step(sink, 52000, check=False)
    gluetun.restart_tunnel()
    forgotten = gluetun.held()
    step(sink, 52000)
    sink.close()
    assert (forgotten, gluetun.held()) == ([], [52000])
    assert [e.message for e in inbox.events] == [
        "gluetun opened port 52000 in its firewall (the port changed)",
        "gluetun opened port 52000 in its firewall (gluetun held no port (its tunnel restarted?))",
    ]

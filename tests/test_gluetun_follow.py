"""PORT_SOURCE=gluetun: following gluetun's port through its tunnel restarts.

A real engine and the follower read the fake gluetun; a recording sink sees every
snapshot and event the other sinks (files, qBittorrent, hook, MQTT) would see.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import EventKind, SinkHealth, Status, SyncState
from pia_mqtt.gluetun.client import GluetunClient, GluetunPortReader
from pia_mqtt.gluetun.follow import GluetunFollower
from tests.fake_gluetun import Behaviour, FakeGluetun
from tests.harness import RecordingSink

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def gluetun() -> Iterator[FakeGluetun]:
    """A development build with PIA forwarding itself (what PORT_SOURCE=gluetun follows)."""
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as fake:
        yield fake


def follower_for(fake: FakeGluetun) -> tuple[GluetunFollower, Engine, RecordingSink]:
    """An engine with the follower as controller and a recording sink, started."""
    engine = Engine(source="gluetun")
    follower = GluetunFollower(
        engine, GluetunPortReader(GluetunClient(fake.url, api_key=None)), interval=3600
    )
    recorder = RecordingSink()
    engine.attach(follower, [recorder])
    engine.start()
    return follower, engine, recorder


def entry(engine: Engine) -> tuple[SyncState, int | None]:
    """The gluetun entry's state and port."""
    health = engine.snapshot.sinks["gluetun"]
    return health.state, health.port


def test_a_tunnel_restart_keeps_the_port_and_reapplies_the_same_number(
    gluetun: FakeGluetun,
) -> None:
    """Port 0 while gluetun restarts its tunnel: last port kept, acquiring/reconnecting.

    The same port back is re-applied (new tunnel_epoch, port_reapplied); never port 0.
    """
    follower, engine, recorder = follower_for(gluetun)
    gluetun.forward(43117)
    follower.poll()
    active = (engine.snapshot.status, engine.snapshot.port, entry(engine))
    gluetun.restart_tunnel()
    follower.poll()
    follower.poll()
    during = (engine.snapshot.status, engine.snapshot.port, entry(engine))
    gluetun.forward(43117)
    follower.poll()
    after = engine.snapshot
    engine.close()
    assert active == (Status.ACTIVE, 43117, (SyncState.IN_SYNC, 43117))
    assert during == (Status.ACQUIRING, 43117, (SyncState.RECONNECTING, 43117))
    assert (after.status, after.port, after.tunnel_epoch) == (Status.ACTIVE, 43117, 1)
    assert {s.port for s in recorder.snapshots} == {None, 43117}
    assert recorder.kinds() == [EventKind.PORT_CHANGED, EventKind.PORT_REAPPLIED]
    assert recorder.events[-1].data["reason"] == "gluetun tunnel restarted"


def test_a_tunnel_restart_with_a_new_port_is_a_port_change(gluetun: FakeGluetun) -> None:
    """gluetun moved to another server: the new port is a change (was N), not a re-apply."""
    follower, engine, recorder = follower_for(gluetun)
    gluetun.forward(43117)
    follower.poll()
    gluetun.restart_tunnel()
    follower.poll()
    gluetun.forward(51000)
    follower.poll()
    snapshot = engine.snapshot
    engine.close()
    assert (snapshot.port, snapshot.previous_port, snapshot.tunnel_epoch) == (51000, 43117, 0)
    assert [(e.kind, e.message) for e in recorder.events] == [
        (EventKind.PORT_CHANGED, "gluetun forwards port 43117"),
        (EventKind.PORT_CHANGED, "gluetun forwards port 51000 (was 43117)"),
    ]


def test_gluetun_itself_restarting_counts_as_a_tunnel_restart(gluetun: FakeGluetun) -> None:
    """Control server gone (error, port kept), back with the same port: re-applied."""
    follower, engine, recorder = follower_for(gluetun)
    gluetun.forward(43117)
    follower.poll()
    gluetun.stop_server()
    follower.poll()
    down = (engine.snapshot.status, engine.snapshot.port, entry(engine))
    gluetun.restart_process()
    gluetun.start()
    gluetun.forward(43117)
    follower.poll()
    engine.close()
    assert down == (Status.ERROR, 43117, (SyncState.UNREACHABLE, 43117))
    assert recorder.kinds() == [EventKind.PORT_CHANGED, EventKind.ERROR, EventKind.PORT_REAPPLIED]


def test_nothing_forwarded_at_start_publishes_no_port(gluetun: FakeGluetun) -> None:
    """Port 0 before any port: acquiring, gluetun reconnecting without a port, no event."""
    follower, engine, recorder = follower_for(gluetun)
    follower.poll()
    snapshot = engine.snapshot
    engine.close()
    assert (snapshot.status, snapshot.port) == (Status.ACQUIRING, None)
    assert snapshot.sinks["gluetun"] == SinkHealth(SyncState.RECONNECTING)
    assert recorder.events == []


def test_several_ports_use_the_first_and_say_so_once(
    gluetun: FakeGluetun, caplog: pytest.LogCaptureFixture
) -> None:
    """{"ports": [a, b]}: port a is published; one log line says so, not one per read."""
    follower, engine, _ = follower_for(gluetun)
    gluetun.forward(40001, 40002)
    with caplog.at_level(logging.INFO, logger="pia_mqtt.gluetun"):
        for _ in range(3):
            follower.poll()
    port = engine.snapshot.port
    engine.close()
    said = [r.getMessage() for r in caplog.records if "ports (" in r.getMessage()]
    assert port == 40001
    assert said == ["gluetun forwards 2 ports (40001, 40002): pia-mqtt uses the first, 40001"]


def test_a_tagged_release_reply_shape_is_followed_too() -> None:
    """v3.41.0/1 answer {"port": N}: followed like the current shape."""
    with FakeGluetun(Behaviour.TAGGED, older_shape=True) as fake:
        follower, engine, _ = follower_for(fake)
        fake.forward(34567)
        follower.poll()
        port = engine.snapshot.port
        engine.close()
    assert port == 34567

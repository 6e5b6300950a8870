"""The lease manager's gateway watch: woken by route events, nothing periodic, one check per burst.

The daemon is the real engine and lease manager against the PIA simulator on loopback;
the route events are a stand-in whose ``notify`` the test calls (the real netlink reader is
tested in namespaces, tests/test_netns_router.py), and the routing state the digest is
computed from is a table the test changes.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.core.engine import Engine, utc_now
from pia_mqtt.core.model import EventKind, GatewayTarget, Status
from pia_mqtt.gateway import netlink, routes
from pia_mqtt.gateway.finder import GatewayFinder
from pia_mqtt.gateway.tables import Address, Route
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import LeaseStore
from pia_mqtt.pia.manager import LeaseManager
from tests.fixtures.pia import SIM_PASS, SIM_USER
from tests.harness import FakeMonotonic, RecordingSink, advance, at, monotonic_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.simulator.pia import PiaSimulator

WG = ([Route("0.0.0.0", 0, None, "wg0", table="51820")], [Address("wg0", "10.5.200.17", 32)])
MOVED = ([Route("0.0.0.0", 0, None, "wg0", table="51820")], [Address("wg0", "10.8.3.4", 32)])


@dataclass
class FakeEvents:
    """RouteEvents whose notify the test calls; ``available=False`` is a refused netlink."""

    available: bool = True
    notify: Callable[[], None] | None = None
    closed: bool = False

    def start(self, notify: Callable[[], None]) -> bool:
        """Keep ``notify`` for the test."""
        self.notify = notify
        return self.available

    def close(self) -> None:
        """Remember that the manager closed it."""
        self.closed = True


@dataclass
class Watched:
    """An engine with its lease manager, the events stand-in and the routing table."""

    engine: Engine
    manager: LeaseManager
    events: FakeEvents
    system: dict[str, tuple[list[Route], list[Address]]]
    path: dict[str, str]
    recorder: RecordingSink


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


def build(sim: PiaSimulator, folder: Path, *, events: FakeEvents) -> Watched:
    """The engine wired like ``pia-mqtt run`` with the configured gateway 127.0.0.1."""
    gateway = sim.gateways[0]
    engine = Engine(clock=utc_now, monotonic=FakeMonotonic())
    system = {"now": WG}
    finder = GatewayFinder(
        configured=gateway.host,
        hostname=None,
        port=gateway.port,
        ca_file=sim.ca_file,
        read_system=lambda: system["now"],
    )
    pia = PiaClient(
        username=SIM_USER,
        password=SIM_PASS,
        token_url=sim.token_url,
        ca_file=sim.ca_file,
        gateway_port=gateway.port,
    )
    # What the watch compares follows the table, not this host: the configured gateway
    # never reads the system, and the real way to 127.0.0.1 never changes.
    path = {"now": "10.5.200.17 ifindex 7"}
    finder.path = lambda _address: path["now"]  # type: ignore[method-assign]
    finder.candidates = lambda: routes.candidates(*system["now"], configured=None)  # type: ignore[method-assign]
    manager = LeaseManager(
        engine,
        pia=pia,
        finder=finder,
        store=LeaseStore(folder / "pia-lease.json"),
        refresh_interval=900,
        watch_interval=2,
        events=events,
    )
    recorder = RecordingSink()
    engine.attach(manager, [recorder])
    return Watched(engine, manager, events, system, path, recorder)


def bound(watched: Watched) -> None:
    """Start and run until the first port is bound (the job clock moved by hand)."""
    watched.engine.start()
    job_clock = monotonic_of(watched.engine)
    for _ in range(1000):
        watched.engine.run_pending()
        if watched.engine.snapshot.status is Status.ACTIVE:
            return
        job_clock.shift(0.01)
    raise AssertionError(f"no port bound: {watched.engine.snapshot}")


def test_with_route_events_the_next_wake_up_is_the_keepalive(pia_sim: PiaSimulator, tmp_path):
    """Nothing polls: no watch job; the engine sleeps until the keep-alive 15 minutes away."""
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    idle = watched.engine.timers.idle_seconds()
    assert not watched.engine.timers.scheduled("watch")
    assert idle is not None
    assert 890 < idle <= 900
    watched.engine.close()
    assert watched.events.closed


def test_where_netlink_is_refused_the_digest_is_polled(pia_sim: PiaSimulator, tmp_path):
    """The /proc digest every GATEWAY_WATCH_INTERVAL (2 s here) replaces the events."""
    watched = build(pia_sim, tmp_path, events=FakeEvents(available=False))
    bound(watched)
    idle = watched.engine.timers.idle_seconds()
    assert watched.engine.timers.scheduled("watch")
    assert idle is not None
    assert idle <= 2
    watched.engine.close()


def test_a_burst_of_route_events_runs_one_detection_and_one_bind(pia_sim: PiaSimulator, tmp_path):
    """Twenty notifications from another thread (a reconnect's burst): one check, one bind.

    The port stays the same, so the bind after the change is announced as a re-apply.
    """
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    before = pia_sim.gateways[0].stats().binds_ok
    events_before = len(watched.recorder.events)
    watched.system["now"] = MOVED
    watched.path["now"] = "10.8.3.4 ifindex 9"
    notify = watched.events.notify
    assert notify is not None
    burst = threading.Thread(target=lambda: [notify() for _ in range(20)])
    burst.start()
    burst.join()

    watched.engine.run_pending()

    assert before + 1 == pia_sim.gateways[0].stats().binds_ok
    new = watched.recorder.events[events_before:]
    assert [EventKind.PORT_REAPPLIED] == [e.kind for e in new], new
    watched.engine.close()


def test_a_change_elsewhere_probes_and_binds_nothing(pia_sim: PiaSimulator, tmp_path):
    """Another interface came up (a container started): the gateway is reached the same way.

    No probe, no bind, nothing re-applied: on a host-network Docker host this happens
    with every container start.
    """
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    before = pia_sim.gateways[0].stats()
    events_before = len(watched.recorder.events)
    watched.system["now"] = (WG[0], [*WG[1], Address("veth1a2b", "172.17.0.1", 16)])
    assert watched.events.notify is not None
    watched.events.notify()
    watched.engine.run_pending()
    assert before == pia_sim.gateways[0].stats()
    assert events_before == len(watched.recorder.events)
    watched.engine.close()


def test_route_events_that_change_nothing_we_read_do_nothing(pia_sim: PiaSimulator, tmp_path):
    """IPv6 router advertisements and the like wake the check, which finds the digest equal."""
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    before = pia_sim.gateways[0].stats()
    assert watched.events.notify is not None
    watched.events.notify()
    watched.engine.run_pending()
    assert before == pia_sim.gateways[0].stats()
    watched.engine.close()


def test_the_keepalive_catches_a_change_the_events_missed(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The safety net costs no wake-up of its own: the keep-alive compares the digest too."""
    with at(utc_now()) as traveller:
        watched = build(pia_sim, tmp_path, events=FakeEvents())
        watched.engine.start()
        advance(watched.engine, traveller, 1)
        watched.system["now"] = MOVED
        watched.path["now"] = "10.8.3.4 ifindex 9"
        with caplog.at_level(logging.INFO):
            advance(watched.engine, traveller, 900)
        assert "Routes or addresses changed (seen by the keep-alive)" in caplog.text
        assert Status.ACTIVE == watched.engine.snapshot.status
        watched.engine.close()


def test_the_verified_gateway_is_saved_with_the_lease(pia_sim: PiaSimulator, tmp_path: Path):
    """STATE_FILE keeps the gateway's address and certificate name next to the signature."""
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    watched.engine.close()
    store = LeaseStore(tmp_path / "pia-lease.json")
    document = json.loads(store.path.read_text())
    assert {"address": "127.0.0.1", "hostname": "sim-gateway-1"} == document["gateway"]
    assert GatewayTarget("127.0.0.1", "sim-gateway-1", "saved") == store.load_gateway()


def test_an_unreadable_saved_gateway_is_ignored_and_the_lease_kept(tmp_path: Path):
    """A damaged ``gateway`` entry only costs the shortcut: full detection, same port."""
    store = LeaseStore(tmp_path / "pia-lease.json")
    reply = json.dumps({"status": "OK", "payload": "e30", "signature": "s"})
    for gateway in ({"address": "not-an-ip", "hostname": "x"}, "10.0.0.1", {"hostname": "x"}):
        store.path.write_text(json.dumps({"reply": reply, "gateway": gateway}))
        assert store.load_gateway() is None


def test_routes_that_move_during_a_detection_get_another_one(pia_sim: PiaSimulator, tmp_path):
    """What a detection read may be gone by the time it returns: detect once more.

    The routes change while the first re-detection runs and then flap back to what it
    started from; a second detection still follows (the digest alone would call it quiet).
    """
    watched = build(pia_sim, tmp_path, events=FakeEvents())
    bound(watched)
    finder = watched.manager._finder
    calls: list[str] = []
    original = finder.find

    def find_while_routes_move(**kwargs: object) -> GatewayTarget:
        calls.append("find")
        if len(calls) == 1:
            watched.system["now"] = WG  # back where the watch started from
        return original(**kwargs)  # type: ignore[arg-type]

    finder.find = find_while_routes_move  # type: ignore[method-assign]
    watched.system["now"] = MOVED
    watched.path["now"] = "10.8.3.4 ifindex 9"
    assert watched.events.notify is not None
    watched.events.notify()
    watched.engine.run_pending()

    assert ["find", "find"] == calls
    watched.engine.close()


def test_netlink_refused_is_reported_and_start_says_so(monkeypatch, caplog):
    """Where the kernel (or seccomp) refuses an rtnetlink socket, start() returns False."""

    def refused(*_args: object, **_kwargs: object) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(netlink.socket, "socket", refused)
    with caplog.at_level(logging.INFO):
        assert not netlink.NetlinkWatch().start(lambda: None)
    assert "Route events (netlink) unavailable: [Errno 1] Operation not permitted" in caplog.text

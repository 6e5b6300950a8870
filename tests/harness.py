"""Build a real engine against the PIA simulator and drive it on a fake clock.

Everything is real (HTTPS simulator, PiaClient, GatewayFinder probing 127.0.0.1,
LeaseStore, PortFilesSink) except time, which has two clocks like the engine:
``time-machine`` moves the wall clock (timestamps, lease expiry, the simulator's own
clock) and a :class:`FakeMonotonic` the jobs are planned on. :func:`advance` moves both
and runs every job that falls due; :func:`step_wall` moves the wall clock alone, as an
NTP correction, a VM resume or a DST change (with a local ``TZ``) would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import time_machine

from pia_mqtt.core.engine import Engine, utc_now
from pia_mqtt.core.model import Event, EventKind, Sink, Snapshot
from pia_mqtt.gateway.finder import GatewayFinder
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import LeaseStore
from pia_mqtt.pia.manager import LeaseManager
from pia_mqtt.simulator.pia import PiaSimulator
from pia_mqtt.sinks.portfiles import PortFilesSink
from tests.fixtures.pia import SIM_PASS, SIM_USER


class FakeMonotonic:
    """A monotonic clock that moves only when told (the engine's job clock in tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """Seconds, like time.monotonic()."""
        return self.now

    def shift(self, seconds: float) -> None:
        """Move forward (a monotonic clock never goes back)."""
        assert seconds >= 0, seconds
        self.now += seconds


@dataclass
class RecordingSink:
    """A sink that remembers every snapshot and event (the test's eyes on the engine)."""

    name: str = "recorder"
    snapshots: list[Snapshot] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def check_interval(self) -> float | None:
        """No periodic check."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Record the snapshot."""
        self.snapshots.append(snapshot)

    def event(self, event: Event) -> None:
        """Record the event."""
        self.events.append(event)

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to close."""

    def kinds(self) -> list[EventKind]:
        """The kinds of every event so far, in order."""
        return [e.kind for e in self.events]


@dataclass
class Daemon:
    """A wired engine and the objects a test inspects."""

    engine: Engine
    manager: LeaseManager
    recorder: RecordingSink
    folder: Path

    @property
    def port_file(self) -> Path:
        """PORT_FILE."""
        return self.folder / "pia-port.txt"

    @property
    def data_file(self) -> Path:
        """PORT_DATA_FILE."""
        return self.folder / "pia-port-data.json"

    @property
    def state_file(self) -> Path:
        """STATE_FILE."""
        return self.folder / "pia-lease.json"

    def data(self) -> dict[str, Any]:
        """The data file's JSON."""
        result: dict[str, Any] = json.loads(self.data_file.read_text())
        return result


def build_daemon(
    sim: PiaSimulator,
    folder: Path,
    *,
    interval: float = 900,
    password: str = SIM_PASS,
    extra_sinks: list[Sink] | None = None,
    port_file: Path | None = None,
    watch_interval: float = 5.0,
    timeout: float = 2.0,
    record: bool = True,
    monotonic: FakeMonotonic | None = None,
) -> Daemon:
    """An engine wired like ``pia-mqtt run`` (files sink + recorder), not yet started.

    ``timeout`` is the PIA client's HTTP timeout; ``record=False`` leaves the (ever-growing)
    recorder out, for the soak; ``monotonic`` is the job clock (a fresh fake one by default).
    """
    gateway = sim.gateways[0]
    store = LeaseStore(folder / "pia-lease.json")
    # As wiring does: the port published before this start is what events compare to.
    engine = Engine(
        clock=utc_now, monotonic=monotonic or FakeMonotonic(), last_port=store.last_port()
    )
    pia = PiaClient(
        username=SIM_USER,
        password=password,
        token_url=sim.token_url,
        ca_file=sim.ca_file,
        gateway_port=gateway.port,
        timeout=timeout,
    )
    # An empty route table keeps the 5-second gateway watch cheap over simulated days.
    finder = GatewayFinder(
        configured=gateway.host,
        hostname=None,
        port=gateway.port,
        ca_file=sim.ca_file,
        read_system=lambda: ([], []),
    )
    manager = LeaseManager(
        engine,
        pia=pia,
        finder=finder,
        store=store,
        refresh_interval=interval,
        watch_interval=watch_interval,
    )
    recorder = RecordingSink()
    files = PortFilesSink(
        port_file or folder / "pia-port.txt",
        folder / "pia-port-data.json",
        refresh_interval=interval,
    )
    engine.attach(manager, [files, *([recorder] if record else []), *(extra_sinks or [])])
    return Daemon(engine=engine, manager=manager, recorder=recorder, folder=folder)


def monotonic_of(engine: Engine) -> FakeMonotonic:
    """The engine's fake job clock (engines built here always have one)."""
    clock = engine.monotonic
    assert isinstance(clock, FakeMonotonic), "build the engine with a FakeMonotonic"
    return clock


def advance(engine: Engine, traveller: time_machine.Traveller, seconds: float) -> None:
    """Move both fake clocks ``seconds`` forward, running every job that falls due on the way."""
    mono = monotonic_of(engine)
    end = mono() + seconds
    engine.run_pending()
    while True:
        idle = engine.timers.idle_seconds()
        step = end - mono() if idle is None or mono() + idle > end else max(idle, 0.001)
        if step > 0:
            mono.shift(step)
            traveller.shift(step)
        engine.run_pending()
        if mono() >= end:
            return


def step_wall(traveller: time_machine.Traveller, seconds: float) -> None:
    """Step the wall clock alone (negative: back), as NTP or a resumed VM does."""
    traveller.shift(seconds)


def at(moment: datetime) -> time_machine.travel:
    """A stopped fake clock at ``moment`` (tick=False: time moves only when told)."""
    return time_machine.travel(moment, tick=False)

"""Build a real engine against the PIA simulator and drive it on a fake clock.

Everything is real (HTTPS simulator, PiaClient, GatewayFinder probing 127.0.0.1,
LeaseStore, PortFilesSink) except time: ``time-machine`` moves the wall clock that both
the engine and ``schedule`` read, and :func:`advance` runs every job that falls due.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
) -> Daemon:
    """An engine wired like ``pia-mqtt run`` (files sink + recorder), not yet started.

    ``timeout`` is the PIA client's HTTP timeout; ``record=False`` leaves the (ever-growing)
    recorder out, for the soak.
    """
    gateway = sim.gateways[0]
    store = LeaseStore(folder / "pia-lease.json")
    # As wiring does: the port published before this start is what events compare to.
    engine = Engine(clock=utc_now, last_port=store.last_port())
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


def advance(engine: Engine, traveller: time_machine.Traveller, seconds: float) -> None:
    """Move the fake clock ``seconds`` forward, running every job that falls due on the way."""
    end = utc_now() + timedelta(seconds=seconds)
    engine.run_pending()
    while True:
        idle = engine.timers.idle_seconds()
        now = utc_now()
        if idle is None or now + timedelta(seconds=idle) > end:
            traveller.move_to(end)
            engine.run_pending()
            return
        traveller.shift(max(idle, 0.001))
        engine.run_pending()


def at(moment: datetime) -> time_machine.travel:
    """A stopped fake clock at ``moment`` (tick=False: time moves only when told)."""
    return time_machine.travel(moment, tick=False)

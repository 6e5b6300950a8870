"""One hour of ``pia-mqtt run`` on a fake clock, in its own process; prints one JSON line.

Run by :mod:`benchmarks.run` with the daemon's environment (simulator, mosquitto and
qBittorrent live in the benchmark process and its children, so they are not counted).
The engine is wired exactly like ``pia-mqtt run`` (``wiring.build_engine``), then
``time-machine`` moves the wall clock and a fake monotonic clock moves the jobs, one
minute at a time, running every keep-alive, gateway watch and qBittorrent check that falls due;
between minutes the engine handles the sinks' reports in real time.

Output: ``{"rss_start_mib", "rss_end_mib", "time_machine_mib", "cpu_s", "fake_seconds",
"real_s", "status"}`` (RSS as measured, time-machine's share not yet taken off).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

# Everything ``pia-mqtt run`` imports comes first, so that what importing time-machine
# adds on top (not part of the daemon) can be measured and taken off.
import pia_mqtt.gateway.finder
import pia_mqtt.mqtt.sink
import pia_mqtt.pia.client
import pia_mqtt.pia.manager
import pia_mqtt.torrent.qbittorrent
import pia_mqtt.torrent.sink  # noqa: F401
from pia_mqtt.core.model import Status
from pia_mqtt.logs import configure
from pia_mqtt.settings import load_settings
from pia_mqtt.wiring import build_engine

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine


def _rss_mib() -> float:
    for line in open("/proc/self/status", encoding="ascii"):  # noqa: PTH123, SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


_BEFORE_TIME_MACHINE = _rss_mib()
import time_machine  # noqa: E402

TIME_MACHINE_MIB = _rss_mib() - _BEFORE_TIME_MACHINE


class FakeMonotonic:
    """The engine's job clock, moved by advance() (a copy of tests.harness.FakeMonotonic)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def advance(
    engine: Engine, traveller: time_machine.Traveller, mono: FakeMonotonic, seconds: float
) -> None:
    """Move both fake clocks, running every job that falls due on the way.

    A copy of ``tests.harness.advance``: importing the harness would pull in the simulator
    (``cryptography``) and pytest, and count their memory as the daemon's.
    """
    end = mono() + seconds
    engine.run_pending()
    while True:
        idle = engine.timers.idle_seconds()
        step = end - mono() if idle is None or mono() + idle > end else max(idle, 0.001)
        if step > 0:
            mono.now += step
            traveller.shift(step)
        engine.run_pending()
        if mono() >= end:
            return


def _cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> int:
    """Start, settle, run one fake hour, settle, report."""
    minutes = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    settings = load_settings(require_credentials=True)
    configure("WARNING")
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        mono = FakeMonotonic()
        engine = build_engine(settings, monotonic=mono)
        try:
            engine.start()
            engine.run(until=lambda: engine.snapshot.status is Status.ACTIVE, timeout=30)
            engine.run(timeout=3.0)  # qBittorrent read-back and MQTT discovery land
            # time-machine's first clock move costs it ~2 MiB of its own: pay that first.
            advance(engine, traveller, mono, 0.5)
            rss_start, cpu0, real0 = _rss_mib(), _cpu(), time.monotonic()
            for _ in range(minutes):
                advance(engine, traveller, mono, 60)
                engine.run(timeout=0.02)
            cpu = _cpu() - cpu0
            real = time.monotonic() - real0
            engine.run(timeout=3.0)
            rss_end = _rss_mib()
            status = engine.snapshot.status.value
        finally:
            engine.close()
    print(
        json.dumps(
            {
                "rss_start_mib": rss_start,
                "rss_end_mib": rss_end,
                "time_machine_mib": TIME_MACHINE_MIB,
                "cpu_s": cpu,
                "fake_seconds": minutes * 60,
                "real_s": real,
                "status": status,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

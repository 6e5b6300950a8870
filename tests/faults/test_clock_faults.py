"""Clock faults in-process: wall-clock steps, DST, a clock far ahead, short signatures.

Two fake clocks, as in the daemon: time-machine moves the wall clock (timestamps, lease
expiry, the simulator's own clock unless a test gives PIA another one) and the harness's
FakeMonotonic moves the jobs. ``step_wall`` moves the wall clock alone, as NTP, a resumed
VM or a Raspberry Pi without RTC does. The same cases run on the real process under
libfaketime in test_clock_process.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pia_mqtt.core.engine import Engine, utc_now
from pia_mqtt.core.model import Event, EventKind, Snapshot, Status
from pia_mqtt.gluetun.client import ForwardedPorts
from pia_mqtt.gluetun.follow import GluetunFollower
from pia_mqtt.simulator.pia import PiaSimulator
from pia_mqtt.sinks.portfiles import PortFilesSink, check_health
from tests.harness import Daemon, FakeMonotonic, advance, at, build_daemon, step_wall

INTERVAL = 900
DAY = 86400
# The end of summer time in Germany in 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
DST_END = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


@dataclass
class BindTimes:
    """A sink noting the job clock at every successful bind (a new ``last_refresh``)."""

    mono: FakeMonotonic
    name: str = "bind-times"
    times: list[float] = field(default_factory=list)
    _last: datetime | None = None

    @property
    def check_interval(self) -> float | None:
        """No periodic check."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Note the moment of a new bind."""
        if snapshot.last_refresh is not None and snapshot.last_refresh != self._last:
            self._last = snapshot.last_refresh
            self.times.append(self.mono())

    def event(self, event: Event) -> None:
        """Events are not needed."""

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to close."""

    def gaps(self) -> list[float]:
        """Seconds of real (job-clock) time between consecutive binds."""
        return [round(b - a, 3) for a, b in zip(self.times, self.times[1:], strict=False)]


def _daemon(sim: PiaSimulator, folder: Path) -> tuple[Daemon, BindTimes]:
    mono = FakeMonotonic()
    binds = BindTimes(mono)
    daemon = build_daemon(
        sim, folder, interval=INTERVAL, watch_interval=3600, extra_sinks=[binds], monotonic=mono
    )
    return daemon, binds


@pytest.mark.parametrize("step", [-3600, 3600], ids=["back-1h", "forward-1h"])
def test_a_wall_clock_step_neither_holds_nor_hurries_the_keepalive(
    pia_sim: PiaSimulator, tmp_path: Path, step: int
) -> None:
    """After the wall clock steps 1 h (back or forward) binds go on every 900 s of real time.

    Before (``schedule``, naive local wall time): a step back held the keep-alive for an
    hour (PIA drops a port after 15 minutes) and a step forward fired it at once.
    """
    with at(utc_now()) as traveller:
        daemon, binds = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        advance(daemon.engine, traveller, 300)
        step_wall(traveller, step)
        advance(daemon.engine, traveller, 3 * INTERVAL)
        stats = pia_sim.gateways[0].stats()
        assert [float(INTERVAL)] * 3 == binds.gaps()
        assert (1, 4) == (stats.signature_requests, stats.binds_ok)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert EventKind.LOST not in daemon.recorder.kinds()
        daemon.engine.close()


def test_end_of_summer_time_with_a_local_tz_does_not_hold_the_keepalive(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """TZ=Europe/Berlin across the end of summer time: a bind every 900 s, the hour repeated.

    Before: local time went from 03:00 back to 02:00, and the keep-alive planned for
    03:05 local waited an hour. No clock step at all: every October.
    """
    # A ZoneInfo destination makes time-machine set the process's local zone too.
    with at((DST_END - timedelta(minutes=10)).astimezone(BERLIN)) as traveller:
        assert time.localtime().tm_isdst == 1
        daemon, binds = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        advance(daemon.engine, traveller, 4 * INTERVAL)
        assert time.localtime().tm_isdst == 0
        data = daemon.data()
        health = check_health(daemon.data_file, refresh_interval=INTERVAL, now=utc_now())
        assert [float(INTERVAL)] * 4 == binds.gaps()
        assert 5 == pia_sim.gateways[0].stats().binds_ok
        assert (True, "active") == (health.ok, data["status"])
        assert data["timestamp"].endswith("Z")
        daemon.engine.close()


def test_a_clock_far_ahead_uses_the_fresh_signature_and_warns_once(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host clock 61 days ahead of PIA's: one signature, the same port, one warning.

    PIA's signatures last 60 days, so by this clock every fresh one has already expired.
    Before: a new signature (a new port) on every keep-alive, forever.
    """
    pia_sim.clock = lambda: datetime.now(UTC) - timedelta(days=61)
    with at(utc_now()) as traveller:
        daemon, _ = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        advance(daemon.engine, traveller, 8 * INTERVAL)
        stats = pia_sim.gateways[0].stats()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        clock_warnings = [w for w in warnings if "clock" in w]
        assert (1, 9) == (stats.signature_requests, stats.binds_ok)
        assert {port} == set(stats.bound_ports)
        assert 1 == len(clock_warnings), warnings
        assert "expired" in clock_warnings[0]
        assert EventKind.RENEWED not in daemon.recorder.kinds()
        daemon.engine.close()


def test_a_signature_pia_issues_with_under_seven_days_is_not_renewed_in_a_loop(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PIA hands out 5-day signatures: each is used until PIA refuses it, not renewed at once.

    Six days of keep-alives: the first signature is kept until PIA calls it expired
    (day 5), then exactly one more; the clock warning is logged once for the process.
    """
    pia_sim.signature_lifetime = timedelta(days=5)
    with at(utc_now()) as traveller:
        daemon, _ = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        advance(daemon.engine, traveller, 6 * DAY)
        stats = pia_sim.gateways[0].stats()
        clock_warnings = [
            r for r in caplog.records if r.levelno == logging.WARNING and "clock" in r.getMessage()
        ]
        assert 2 == stats.signature_requests
        assert 2 == len(set(stats.bound_ports))
        assert 1 == len(clock_warnings)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        daemon.engine.close()


@pytest.mark.parametrize("days_left", [-1, 3], ids=["expired", "inside-7-day-margin"])
def test_a_saved_lease_that_looks_unusable_is_replaced_before_anything_is_bound(
    pia_sim: PiaSimulator, tmp_path: Path, days_left: int
) -> None:
    """A saved lease that looks expired (or has under 7 days) never reaches PIA or a sink.

    The restart asks for a fresh signature first; the saved port is never bound, published
    or written.
    """
    with at(utc_now()) as traveller:
        first, _ = _daemon(pia_sim, tmp_path)
        first.engine.start()
        advance(first.engine, traveller, 1)
        saved = first.engine.snapshot.port
        first.engine.close()
        traveller.shift((60 - days_left) * DAY)
        second, _ = _daemon(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        published = {s.port for s in second.recorder.snapshots}
        assert 2 == stats.signature_requests
        assert (saved, stats.issued_ports[1]) == stats.bound_ports
        assert {None, stats.issued_ports[1]} == published
        assert f"{stats.issued_ports[1]}\n" == second.port_file.read_text()
        second.engine.close()


def test_healthcheck_calls_a_bind_in_the_future_a_clock_problem(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """After the clock steps back an hour, the last bind is "in the future": unhealthy.

    The message names the clock; the next keep-alive (on real time) makes it healthy again.
    Before: "bound -3550 s ago" counted as fresh.
    """
    with at(utc_now()) as traveller:
        daemon, _ = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        advance(daemon.engine, traveller, 50)
        step_wall(traveller, -3600)
        stepped = check_health(daemon.data_file, refresh_interval=INTERVAL, now=utc_now())
        advance(daemon.engine, traveller, INTERVAL)
        after = check_health(daemon.data_file, refresh_interval=INTERVAL, now=utc_now())
        assert (False, True) == (stepped.ok, after.ok)
        assert "in the future" in stepped.reason
        assert "clock" in stepped.reason
        daemon.engine.close()


class SteadyGluetun:
    """gluetun's control server, reduced to what the follower reads: always one port."""

    def read(self) -> ForwardedPorts:
        """The forwarded port."""
        return ForwardedPorts(ports=(43210,), started=True, shape="port+ports")

    def close(self) -> None:
        """Nothing to close."""


def test_gluetun_follower_keeps_confirming_after_the_wall_clock_steps_back(
    tmp_path: Path,
) -> None:
    """PORT_SOURCE=gluetun: the port is re-confirmed every minute of real time after a step.

    Before: the "confirmed less than a minute ago" test used the wall clock, so after a step
    back of one hour nothing was confirmed for an hour and healthcheck went stale.
    """
    mono = FakeMonotonic()
    with at(utc_now()) as traveller:
        engine = Engine(clock=utc_now, monotonic=mono, source="gluetun")
        files = PortFilesSink(
            tmp_path / "pia-port.txt", tmp_path / "pia-port-data.json", refresh_interval=INTERVAL
        )
        engine.attach(GluetunFollower(engine, SteadyGluetun(), interval=10), [files])
        engine.start()
        advance(engine, traveller, 1)
        step_wall(traveller, -3600)
        advance(engine, traveller, 3 * 60 + 5)
        last = engine.snapshot.last_refresh
        assert last is not None
        age = (utc_now() - last).total_seconds()
        health = check_health(tmp_path / "pia-port-data.json", refresh_interval=60, now=utc_now())
        engine.close()
    assert 0 <= age <= 70
    assert health.ok, health.reason


def test_a_lost_port_is_reported_after_15_minutes_of_real_time_despite_a_step_back(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """The gateway goes down and the clock steps back 1 h: `lost` still comes after 15 min.

    PIA drops a port 15 minutes of real time after its last bind; the wall clock has no say.
    Before: the step back postponed both the retries and the `lost` event by an hour.
    """
    with at(utc_now()) as traveller:
        daemon, _ = _daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        pia_sim.gateways[0].stop()
        step_wall(traveller, -3600)
        advance(daemon.engine, traveller, 2 * INTERVAL)
        lost = daemon.recorder.kinds().count(EventKind.LOST)
        assert (1, Status.ERROR) == (lost, daemon.engine.snapshot.status)
        pia_sim.gateways[0].start()
        advance(daemon.engine, traveller, 61)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        daemon.engine.close()

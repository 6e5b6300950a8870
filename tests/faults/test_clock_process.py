"""Clock faults on the real ``pia-mqtt run`` process, under libfaketime.

libfaketime (Debian's ``faketime``) is preloaded into the daemon with
``FAKETIME_DONT_FAKE_MONOTONIC=1``: its wall clock (``time()``, ``clock_gettime(REALTIME)``,
``localtime``) follows an offset the test writes into a file, re-read every second, while
its monotonic clock stays real. The simulator runs in the test process on the real clock,
so PIA's view (binds counted by ``stats()``) is real time. The keep-alive is 3 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import Daemon, base_env, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

INTERVAL = 3
# The end of summer time in Germany in 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
DST_END = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
LIBRARIES = [
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/faketime/libfaketimeMT.so.1"),
]


def _libfaketime() -> Path:
    for path in LIBRARIES:
        if path.exists():
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("libfaketime is missing: apt-get install faketime")
    pytest.skip("libfaketime is missing: apt-get install faketime")


class FakeWall:
    """The offset file libfaketime reads: the daemon's wall clock = real + offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.set(0)

    def set(self, offset: float) -> None:
        """Step the daemon's wall clock to real time + ``offset`` seconds."""
        self.offset = round(offset)
        self.path.write_text(f"{self.offset:+d}\n")

    def at(self, moment: datetime) -> None:
        """Step the daemon's wall clock so that it reads ``moment`` now."""
        self.set((moment - datetime.now(UTC)).total_seconds())

    def env(self) -> dict[str, str]:
        """The variables that put libfaketime under the daemon, monotonic clock left real."""
        return {
            "LD_PRELOAD": str(_libfaketime()),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_CACHE_DURATION": "1",
        }


def _start(
    sim: PiaSimulator, shared: Path, daemons: list[Daemon], wall: FakeWall, **extra: str
) -> tuple[Daemon, dict[str, str], Path]:
    config = config_dir(shared, owner=None)
    env = daemon_env(
        sim,
        shared,
        config,
        PORT_FORWARD_REFRESH_INTERVAL=str(INTERVAL),
        **wall.env(),
        **extra,
    )
    daemon = start_daemon(env, shared / "daemon.log", user=None)
    daemons.append(daemon)
    data_file = config / "pia-port-data.json"
    eventually(lambda: daemon.running() and data_file.exists(), timeout=30)
    return daemon, env, data_file


def _binds_during(sim: PiaSimulator, seconds: float) -> int:
    before = sim.gateways[0].stats().binds_ok
    time.sleep(seconds)
    return sim.gateways[0].stats().binds_ok - before


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _timestamp(data_file: Path) -> datetime:
    return datetime.fromisoformat(json.loads(data_file.read_text())["timestamp"])


@pytest.mark.parametrize("step", [-3600, 3600], ids=["back-1h", "forward-1h"])
def test_the_real_process_keeps_binding_after_the_wall_clock_steps(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon], step: int
) -> None:
    """`run` under libfaketime: the wall clock steps 1 h; binds go on every 3 s of real time.

    The data file's timestamp follows the stepped clock (the step reached the process),
    the port stays, and healthcheck (same clock) is healthy after the next keep-alive.
    Before (``schedule``): after a step back no bind happened for an hour.
    """
    wall = FakeWall(shared_dir / "faketime")
    daemon, env, data_file = _start(pia_sim, shared_dir, daemons, wall)
    assert _binds_during(pia_sim, 2 * INTERVAL) >= 1
    wall.set(step)
    time.sleep(1.5)  # libfaketime re-reads the offset every second
    binds = _binds_during(pia_sim, 4 * INTERVAL)
    shown = _timestamp(data_file) - datetime.now(UTC)
    health = _healthcheck(env)
    stats = pia_sim.gateways[0].stats()
    code = daemon.stop()
    assert binds >= 3, daemon.log()
    assert abs(shown.total_seconds() - step) < 2 * INTERVAL + 5
    assert (0, "healthy") == (health.returncode, health.stdout.split(":")[0]), health.stdout
    assert (1, 1) == (stats.signature_requests, len(set(stats.bound_ports)))
    assert 0 == code


def test_the_real_process_keeps_binding_across_the_end_of_summer_time(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """TZ=Europe/Berlin, the process's clock 10 s before 03:00 CEST on 25 October 2026.

    Local time goes back from 03:00 to 02:00 (the log's local timestamps show both); binds go
    on every 3 s of real time. Before: the keep-alive planned for 03:00:0x local waited an
    hour.
    """
    wall = FakeWall(shared_dir / "faketime")
    wall.at(DST_END - timedelta(seconds=12))
    crossing = time.monotonic() + 12
    daemon, _, data_file = _start(pia_sim, shared_dir, daemons, wall, TZ="Europe/Berlin")
    eventually(lambda: time.monotonic() > crossing + 1, timeout=30)
    binds = _binds_during(pia_sim, 4 * INTERVAL)
    last = _timestamp(data_file)
    code = daemon.stop()
    log = daemon.log()  # "Received SIGTERM" carries the local time after the change
    assert binds >= 3, log
    assert last > DST_END
    assert re.search(r"^2026-10-25 02:59:\d\d", log, re.MULTILINE), log
    assert re.search(r"^2026-10-25 02:00:\d\d", log, re.MULTILINE), log
    assert 0 == code


def test_the_real_process_with_a_clock_far_ahead_keeps_one_port_and_warns_once(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """The process's clock 61 days ahead: PIA's fresh 60-day signature looks expired.

    It is used, one WARNING names the clock, and the keep-alive binds it every 3 s.
    Before: a new signature and a new port on every keep-alive.
    """
    wall = FakeWall(shared_dir / "faketime")
    wall.set(61 * 86400)
    daemon, _, _ = _start(pia_sim, shared_dir, daemons, wall)
    binds = _binds_during(pia_sim, 4 * INTERVAL)
    stats = pia_sim.gateways[0].stats()
    log = daemon.log()
    code = daemon.stop()
    warnings = [line for line in log.splitlines() if "WARNING" in line and "clock" in line]
    assert binds >= 3, log
    assert (1, 1) == (stats.signature_requests, len(set(stats.bound_ports)))
    assert 1 == len(warnings), log
    assert 0 == code


def test_the_healthcheck_command_fails_on_a_bind_in_the_future_naming_the_clock(
    tmp_path: Path,
) -> None:
    """`pia-mqtt healthcheck` with a last bind 3550 s ahead of the clock: exit 1, says clock.

    Before: "port ... bound -3550 s ago", exit 0.
    """
    data_file = tmp_path / "pia-port-data.json"
    ahead = datetime.now(UTC) + timedelta(seconds=3550)
    stamp = ahead.isoformat(timespec="seconds").replace("+00:00", "Z")
    data_file.write_text(
        json.dumps({"port": 43210, "timestamp": stamp, "status": "active", "refresh_interval": 900})
    )
    env = base_env({"PORT_DATA_FILE": str(data_file)})
    result = _healthcheck(env)
    assert 1 == result.returncode, result.stdout
    assert result.stdout.startswith("unhealthy: ")
    assert "in the future" in result.stdout
    assert "clock" in result.stdout


@pytest.mark.parametrize("days_left", [-1, 3], ids=["expired", "inside-7-day-margin"])
def test_once_replaces_a_saved_lease_that_looks_unusable_before_binding_or_writing(
    pia_sim: PiaSimulator, shared_dir: Path, days_left: int
) -> None:
    """`pia-mqtt once` with a saved lease that looks expired (or has 3 days left).

    A fresh signature is fetched first: the saved port is never bound, never written to
    PORT_FILE, and the state file holds the new lease.
    """
    config = config_dir(shared_dir, owner=None)
    gateway = pia_sim.gateways[0]
    expires = datetime.now(UTC) + timedelta(days=days_left)
    raw = gateway.issue_signature(
        "saved-token", port=44444, expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    )
    state = config / "pia-lease.json"
    state.write_text(json.dumps({"reply": raw, "port": 44444, "expires_at": expires.isoformat()}))
    state.chmod(0o600)
    env = daemon_env(pia_sim, shared_dir, config)
    result = subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    stats = gateway.stats()
    new_port = stats.issued_ports[-1]
    assert 0 == result.returncode, result.stderr
    assert (1, (new_port,)) == (stats.signature_requests, stats.bound_ports)
    assert f"{new_port}\n" == (config / "pia-port.txt").read_text()
    assert new_port == json.loads(state.read_text())["port"]
    assert f"port={new_port} " in result.stdout

"""SIGTERM/SIGINT end the real process within 2 s in every state, every peer hung.

"Hung" peers accept the TCP connection and never answer (a listening socket nobody
accepts from, or mosquitto stopped with SIGSTOP after the daemon connected): the PIA
gateway and token endpoint, MQTT, qBittorrent, gluetun, and a hook that sleeps. The time
is measured from the signal to the process's exit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pia_mqtt.core.engine import CLOSE_TIMEOUT, Engine
from pia_mqtt.core.model import Command, Event, Snapshot
from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import Daemon, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually
from tests.fixtures.mosquitto import Broker

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

LIMIT = 2.0


@pytest.fixture
def silent() -> Iterator[list[int]]:
    """Five loopback ports that accept connections (the backlog) and never answer."""
    sockets = []
    for _ in range(5):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sockets.append(sock)
    yield [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()


def _stop_time(daemon: Daemon, signum: int) -> tuple[float, int]:
    started = time.monotonic()
    code = daemon.stop(signum, timeout=10)
    return time.monotonic() - started, code


def _hung_env(sim: PiaSimulator, shared: Path, ports: list[int]) -> dict[str, str]:
    pia, token, mqtt, qbt, gluetun = ports
    config = config_dir(shared, owner=None)
    return daemon_env(
        sim,
        shared,
        config,
        PIA_GATEWAY_PORT=str(pia),
        PIA_TOKEN_URL=f"https://127.0.0.1:{token}/api/client/v2/token",
        MQTT_HOST="127.0.0.1",
        MQTT_PORT=str(mqtt),
        QBITTORRENT_HOST=f"http://127.0.0.1:{qbt}",
        GLUETUN_CONTROL_URL=f"http://127.0.0.1:{gluetun}",
        PORT_CHANGE_COMMAND="sleep 60",
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", ["starting", "probing"])
def test_start_up_with_every_peer_hung_stops_within_2_s(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    silent: list[int],
    signum: int,
    moment: str,
) -> None:
    """Signalled as soon as it logs "starting", or while the gateway probe hangs: exit < 2 s.

    The gateway, token endpoint, broker, qBittorrent and gluetun all accept and never
    answer. Exit status 0 (a clean stop, not a kill by the signal).
    """
    env = _hung_env(pia_sim, shared_dir, silent)
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and "starting (run)" in daemon.log(), interval=0.005)
    if moment == "probing":
        time.sleep(3)
    took, code = _stop_time(daemon, signum)
    print(f"{signal.Signals(signum).name} while {moment}: exit after {took:.3f} s")
    assert took < LIMIT, daemon.log()
    assert 0 == code, daemon.log()


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread ``tid`` of process ``pid`` (glibc's tgkill)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid}, {signum})")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_the_kernel_hands_to_another_thread_stops_within_2_s(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon], signum: int
) -> None:
    """A signal delivered to one of the daemon's other threads still stops it within 2 s.

    The kernel may hand a signal to any thread that does not block it. Python runs its
    handler on the main thread only, once that wakes: the engine's next job, here the
    keep-alive 900 s away. Exit status 0 and the usual "Received ..." line.
    """
    env = daemon_env(pia_sim, shared_dir, config_dir(shared_dir, owner=None))
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and "bound on" in daemon.log(), timeout=30)
    pid = daemon.proc.pid
    time.sleep(0.5)  # the start-up's work is done: the main thread waits for its next job
    tids = (int(task.name) for task in Path(f"/proc/{pid}/task").iterdir())
    others = sorted(tid for tid in tids if tid != pid)
    assert others, "the daemon runs no thread but the main one"
    started = time.monotonic()
    _tgkill(pid, others[-1], signum)
    try:
        code = daemon.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 5 s after {signal.Signals(signum).name}:\n{daemon.log()}")
    took = time.monotonic() - started
    print(f"{signal.Signals(signum).name} to thread {others[-1]}: exit after {took:.3f} s")
    assert took < LIMIT, daemon.log()
    assert 0 == code, daemon.log()
    assert f"Received {signal.Signals(signum).name}: stopping" in daemon.log()


def test_running_with_a_hung_bind_hook_broker_qbittorrent_and_gluetun_stops_within_2_s(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    silent: list[int],
    mosquitto: Broker,
) -> None:
    """A hung keep-alive, a sleeping hook, a stopped broker: SIGTERM ends it within 2 s.

    The keep-alive waits on a held PIA reply, the hook sleeps, mosquitto is stopped with
    SIGSTOP, qBittorrent and gluetun never answer; exit status 0, and the hook does not
    outlive the daemon.

    Before: every sink's close waited its own timeout one after the other (5 s and more).
    """
    config = config_dir(shared_dir, owner=None)
    _, _, _, qbt, gluetun = silent
    env = daemon_env(
        pia_sim,
        shared_dir,
        config,
        PORT_FORWARD_REFRESH_INTERVAL="3",
        MQTT_HOST=mosquitto.host,
        MQTT_PORT=str(mosquitto.port),
        QBITTORRENT_HOST=f"http://127.0.0.1:{qbt}",
        GLUETUN_CONTROL_URL=f"http://127.0.0.1:{gluetun}",
        PORT_CHANGE_COMMAND=f"sleep {HOOK_SLEEP}",
    )
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and (config / "pia-port.txt").exists(), timeout=30)
    eventually(_hook_pids, timeout=10)
    eventually(lambda: "connected to MQTT broker" in daemon.log(), timeout=30)
    assert mosquitto.proc is not None
    mosquitto.pause()
    try:
        gateway = pia_sim.gateways[0]
        gateway.delay_next(60, times=5)
        # A request took a delay: the keep-alive is now waiting on the held reply (it may
        # reuse its kept-alive connection, so a new connection is not the sign).
        eventually(lambda: len(gateway._delays) < 5, timeout=10)
        time.sleep(0.5)
        took, code = _stop_time(daemon, signal.SIGTERM)
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    print(f"SIGTERM with every peer hung: exit after {took:.3f} s")
    left = _hook_pids()
    for pid in left:  # a hook that outlived the daemon: end it (by its id) and fail
        os.kill(pid, signal.SIGKILL)
    assert took < LIMIT, daemon.log()
    assert 0 == code, daemon.log()
    assert [] == left, "the hook outlived the daemon"


def test_once_waiting_for_a_running_hook_stops_within_2_s(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """`once` waits for the hook it started (up to 30 s); SIGTERM there ends it within 2 s.

    The hook is killed with its process group; the exit status is 1 (no complete run).
    Before: the signal was noted and `once` went on waiting for the hook.
    """
    config = config_dir(shared_dir, owner=None)
    env = daemon_env(pia_sim, shared_dir, config, PORT_CHANGE_COMMAND=f"sleep {HOOK_SLEEP}")
    daemon = start_daemon(env, shared_dir / "once.log", command="once", user=None)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and _hook_pids(), timeout=30)
    took, code = _stop_time(daemon, signal.SIGTERM)
    print(f"SIGTERM while once waits for the hook: exit after {took:.3f} s")
    left = _hook_pids()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert took < LIMIT, daemon.log()
    assert 1 == code, daemon.log()
    assert [] == left, "the hook outlived `once`"


HOOK_SLEEP = "59.25"


def _hook_pids() -> list[int]:
    """Processes running this test's hook (``sleep 59.25``), read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", HOOK_SLEEP.encode()]:
            pids.append(int(entry.name))
    return pids


class HungClose:
    """A sink whose close hangs (a peer that never answers), recording that it was called."""

    def __init__(self, name: str, hang: float) -> None:
        self.name = name
        self.hang = hang
        self.closed_at: float | None = None
        self._release = threading.Event()

    @property
    def check_interval(self) -> float | None:
        """No periodic check."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Nothing to publish."""

    def event(self, event: Event) -> None:
        """Nothing to record."""

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Hang for ``hang`` seconds (or until released)."""
        self.closed_at = time.monotonic()
        self._release.wait(self.hang)

    def release(self) -> None:
        """End the hang (test teardown)."""
        self._release.set()


def test_engine_close_shares_one_deadline_and_still_reaches_the_last_sink() -> None:
    """Three closes hanging 10 s each, then the MQTT-like last one: all done within 1.3 s.

    They close side by side until a common deadline, then the last sink (MQTT, which says
    `offline`) still gets its share. Before: 30 s, one after the other.
    """
    hung = [HungClose(f"hung-{i}", 10) for i in range(3)]
    last = HungClose("mqtt", 0)
    engine = Engine()
    engine.attach(Idle(), [*hung, last])
    started = time.monotonic()
    try:
        engine.close()
        took = time.monotonic() - started
    finally:
        for sink in hung:
            sink.release()
    print(f"close with three hung sinks: {took:.3f} s")
    assert took < CLOSE_TIMEOUT + 0.1
    assert all(s.closed_at is not None for s in [*hung, last])
    assert last.closed_at is not None
    assert last.closed_at - started < CLOSE_TIMEOUT


class Idle:
    """A controller with nothing to do."""

    def start(self) -> None:
        """Nothing to start."""

    def handle(self, command: Command) -> None:
        """Nothing to handle."""

    def backoff_until(self) -> float | None:
        """Never backing off."""
        return None

    def close(self) -> None:
        """Nothing to close."""

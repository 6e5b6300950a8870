"""Cold start, restart with a saved lease, port change, idle memory and keep-alive CPU.

Each function runs real ``pia-mqtt run`` processes against :class:`~benchmarks.peers.Peers`
and returns plain numbers (seconds, MiB); :mod:`benchmarks.run` turns them into the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.observe import (
    BenchError,
    MqttWatch,
    Poller,
    files_show,
    port_message,
    state_message,
    wait_all,
)
from benchmarks.peers import Daemon, Peers, running

RSS_AFTER = 5.0  # seconds after start for the "idle" memory reading
STEP_TIMEOUT = 30.0


@dataclass
class Results:
    """Every sample, by row name, in the order taken."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        """Record one sample."""
        self.samples.setdefault(name, []).append(value)


@dataclass
class Expected:
    """The port the observers wait for, learned from the simulator's bind log."""

    port: int | None = None

    def __call__(self) -> int | None:
        return self.port


def _bound_poller(peers: Peers, expected: Expected, *, after_binds: int, new: bool) -> Poller:
    """Passes once the gateway bound a port after ``after_binds`` binds (a new one if ``new``)."""
    old = expected.port

    def check() -> bool:
        ports = peers.gateway.stats().bound_ports
        if len(ports) <= after_binds or (new and ports[-1] == old):
            return False
        expected.port = ports[-1]
        return True

    return Poller("port bound", check, 0.001)


def _observers(
    peers: Peers, run: Path, watch: MqttWatch, expected: Expected, *, after_binds: int, new: bool
) -> tuple[list[Poller], list[tuple[str, MqttWatch, Callable[..., bool]]]]:
    pollers = [
        _bound_poller(peers, expected, after_binds=after_binds, new=new),
        Poller(
            "files", files_show(run / "pia-port.txt", run / "pia-port-data.json", expected), 0.001
        ),
        Poller(
            "qBittorrent",
            lambda: expected.port is not None and peers.qbt_port() == expected.port,
            0.005,
        ),
    ]
    mqtt = [
        ("MQTT port", watch, port_message(watch.topic, expected)),
        ("MQTT state", watch, state_message(watch.topic, expected)),
    ]
    return pollers, mqtt


def start_and_restart(peers: Peers, folder: Path, index: int, results: Results) -> None:
    """One cold start (no saved lease), the idle RSS, then a restart with the saved lease."""
    run = folder / f"run{index}"
    run.mkdir()
    topic = f"bench-{index}"
    watch = MqttWatch(peers.broker.host, peers.broker.port, topic)
    try:
        env = peers.env(run, topic)
        expected = Expected()
        pollers, mqtt = _observers(
            peers,
            run,
            watch,
            expected,
            after_binds=len(peers.gateway.stats().bound_ports),
            new=True,
        )
        started = time.monotonic()
        with running(Daemon.start(env, run / "daemon.log")) as daemon:
            seen = wait_all(
                pollers, mqtt, after=started, timeout=STEP_TIMEOUT, alive=daemon.problem
            )
            results.add("cold start: all four seen", max(seen.values()))
            for name, value in seen.items():
                results.add(f"cold start: {name}", value)
            time.sleep(max(0.0, started + RSS_AFTER - time.monotonic()))
            results.add("RSS 5 s after start (MiB)", daemon.rss_mib())
        first_port = expected.port

        # Restart: the saved lease must give the same port. Clear what would already show it
        # (retained MQTT, qBittorrent's port) so that only the new process can make it appear.
        watch.clear_retained("port", "state", "status")
        peers.qbt.set_preferences({"listen_port": peers.qbt.listen_port})
        pollers, mqtt = _observers(
            peers,
            run,
            watch,
            expected,
            after_binds=len(peers.gateway.stats().bound_ports),
            new=False,
        )
        pollers[1] = Poller("files", _rewritten(run, first_port), 0.001)
        started = time.monotonic()
        with running(Daemon.start(env, run / "daemon.log")) as daemon:
            seen = wait_all(
                pollers, mqtt, after=started, timeout=STEP_TIMEOUT, alive=daemon.problem
            )
        if expected.port != first_port:
            raise BenchError(f"restart changed the port {first_port} -> {expected.port}")
        results.add("restart (saved lease): same port everywhere", max(seen.values()))
        results.add("restart (saved lease): MQTT port", seen["MQTT port"])
        results.add("restart (saved lease): files", seen["files"])
    finally:
        watch.close()


def _rewritten(run: Path, port: int | None) -> Callable[[], bool]:
    data_file = run / "pia-port-data.json"
    before = data_file.stat().st_mtime_ns
    same = files_show(run / "pia-port.txt", data_file, lambda: port)
    return lambda: data_file.stat().st_mtime_ns > before and same()


def port_changes(peers: Peers, folder: Path, presses: int, results: Results) -> None:
    """Press ``new_port`` over MQTT ``presses`` times; time until every sink shows the new port."""
    run = folder / "press"
    run.mkdir()
    topic = "bench-press"
    watch = MqttWatch(peers.broker.host, peers.broker.port, topic)
    try:
        expected = Expected()
        pollers, mqtt = _observers(
            peers,
            run,
            watch,
            expected,
            after_binds=len(peers.gateway.stats().bound_ports),
            new=True,
        )
        started = time.monotonic()
        with running(Daemon.start(peers.env(run, topic), run / "daemon.log")) as daemon:
            wait_all(pollers, mqtt, after=started, timeout=STEP_TIMEOUT, alive=daemon.problem)
            # Let the start settle (qBittorrent read-back, retained state) before pressing.
            time.sleep(1.0)
            for _ in range(presses):
                pollers, mqtt = _observers(
                    peers, run, watch, expected,
                    after_binds=len(peers.gateway.stats().bound_ports), new=True,
                )  # fmt: skip
                pressed = time.monotonic()
                watch.publish(f"{topic}/new_port", "PRESS")
                seen = wait_all(
                    pollers, mqtt, after=pressed, timeout=STEP_TIMEOUT, alive=daemon.problem
                )
                bound = seen.pop("port bound")
                results.add("port change: press -> all sinks", max(seen.values()))
                results.add("port change: bound -> all sinks", max(seen.values()) - bound)
                results.add("port change: press -> bound (PIA)", bound)
                time.sleep(0.3)
    finally:
        watch.close()


def keepalive_cpu(
    peers: Peers, folder: Path, windows: int, seconds: float, results: Results
) -> None:
    """CPU per keep-alive: the daemon at a 1 s interval minus the same daemon idle, per bind.

    One daemon runs with ``PORT_FORWARD_REFRESH_INTERVAL=1`` and one with the default 900,
    at the same time and otherwise alike (gateway watch every 5 s, qBittorrent check every
    60 s, MQTT). Over each window of ``seconds`` the idle one's CPU (user + system, children
    included) is taken from the busy one's and divided by the binds the gateway saw.
    """
    daemons = {}
    watches = []
    try:
        for interval in (900, 1):
            run = folder / f"cpu{interval}"
            run.mkdir()
            topic = f"bench-cpu{interval}"
            watch = MqttWatch(peers.broker.host, peers.broker.port, topic)
            watches.append(watch)
            expected = Expected()
            pollers, mqtt = _observers(
                peers, run, watch, expected,
                after_binds=len(peers.gateway.stats().bound_ports), new=True,
            )  # fmt: skip
            env = peers.env(run, topic, PORT_FORWARD_REFRESH_INTERVAL=str(interval))
            started = time.monotonic()
            daemon = Daemon.start(env, run / "daemon.log")
            daemons[interval] = daemon
            wait_all(pollers, mqtt, after=started, timeout=STEP_TIMEOUT, alive=daemon.problem)
        time.sleep(2.0)  # past start-up work (qBittorrent read-back, discovery)
        total_busy = total_idle = 0.0
        total_binds = 0
        for _ in range(windows):
            binds0 = len(peers.gateway.stats().bound_ports)
            idle0, busy0 = daemons[900].cpu_seconds(), daemons[1].cpu_seconds()
            time.sleep(seconds)
            binds = len(peers.gateway.stats().bound_ports) - binds0
            idle = daemons[900].cpu_seconds() - idle0
            busy = daemons[1].cpu_seconds() - busy0
            for daemon in daemons.values():
                if daemon.problem():
                    raise BenchError(daemon.problem() or "")
            results.add("keep-alive CPU per cycle (ms)", (busy - idle) / binds * 1000)
            total_busy, total_idle, total_binds = (
                total_busy + busy,
                total_idle + idle,
                total_binds + binds,
            )
        busy, idle, binds = total_busy, total_idle, total_binds
        # /proc counts CPU in 10 ms ticks: the sum over every window is the precise figure.
        results.add("keep-alive CPU per cycle, all windows (ms)", (busy - idle) / binds * 1000)
        results.add("idle daemon CPU per 15 min, real clock (ms)", idle / (windows * seconds) * 9e5)
        results.notes["keep-alive CPU per cycle (ms)"] = (
            f"{windows} windows of {seconds:.0f} s: {binds} keep-alives, {busy * 1000:.0f} ms CPU "
            f"at a 1 s interval vs {idle * 1000:.0f} ms for the idle daemon (10 ms ticks)"
        )
    finally:
        for daemon in daemons.values():
            daemon.stop()
        for watch in watches:
            watch.close()

"""CPU per hour side by side: an idle ``pia-mqtt run`` against PIA's own bash loop.

Both run in the same benchmark, against the same simulator on loopback:

- The daemon: CPU of every thread from ``/proc/<pid>/task/*/schedstat`` (nanoseconds on the
  CPU; ``/proc/<pid>/stat``'s 10 ms ticks are too coarse for an idle process), over a
  window of real time with the default 900 s keep-alive, scaled to an hour; plus 4
  keep-alives, each priced by a twin daemon at a 1 s interval running in the same window
  ((busy - idle) / binds). Wake-ups are the voluntary context switches of every thread.
- PIA's ``port_forwarding.sh`` loop body: ``curl -Gs -m 5 --connect-to ... --cacert ...
  bindPort``, ``jq -r .status`` and ``date`` twice, run N times by one bash process; its
  CPU is what the benchmark's children used (``RUSAGE_CHILDREN``: bash, curl, jq, date).
  Between bodies the script sleeps 15 minutes, which costs nothing: 4 bodies per hour.
- The periodic checks (qBittorrent's drift check, gluetun's port check) priced the same
  way as a keep-alive: a twin with a 1 s check interval.
"""

from __future__ import annotations

import base64
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.observe import BenchError, read_json
from benchmarks.peers import Daemon, Peers
from pia_mqtt.settings import Settings

if TYPE_CHECKING:
    from benchmarks.scenarios import Results

OFFICIAL_BODY = r"""
for _ in $(seq "$RUNS"); do
  bind_port_response="$(curl -Gs -m 5 \
    --connect-to "$PF_HOSTNAME::$PF_GATEWAY:" \
    --cacert "$PIA_CA" \
    --data-urlencode "payload=${payload}" \
    --data-urlencode "signature=${signature}" \
    "https://${PF_HOSTNAME}:${PF_PORT}/bindPort")"
  if [[ $(echo "$bind_port_response" | jq -r '.status') != "OK" ]]; then
    echo "bindPort failed: $bind_port_response" >&2
    exit 1
  fi
  echo -e Refreshed on'\t'"$(date)"
  echo -e Expires on'\t'"$(date --date="$expires_at")"
done
"""
MQTT = frozenset({"MQTT_HOST", "MQTT_PORT"})
OFF = frozenset({"QBITTORRENT_HOST", "QBITTORRENT_USER", "QBITTORRENT_PASS"}) | MQTT
KEEPALIVES_PER_HOUR = 4
# The drift check's default interval, and the twin's: longer than qBittorrent keeps an idle
# HTTP connection open (7 s), so each of its checks connects again, like a 300-s one.
QBT_CHECK_DEFAULT = Settings.model_fields["qbittorrent_check_interval"].default
COLD_CHECK = 10


def task_cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (schedstat: nanoseconds on the CPU)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` so far (each one a wake-up)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _bound(run: Path, daemon: Daemon, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.problem():
            raise BenchError(daemon.problem() or "")
        data = read_json(run / "pia-port-data.json")
        if data is not None and data.get("status") == "active":
            return
        time.sleep(0.05)
    raise BenchError(f"no port bound within {timeout} s: {daemon.log.read_text()[-2000:]}")


def _pair(
    peers: Peers,
    folder: Path,
    name: str,
    seconds: float,
    *,
    drop: frozenset[str],
    busy: dict[str, str],
) -> tuple[float, int, float, float]:
    """Idle daemon and a busy twin over one window: idle CPU, idle wake-ups, busy CPU, binds."""
    daemons: dict[str, tuple[Daemon, Path]] = {}
    try:
        for role, extra in (("idle", {}), ("busy", busy)):
            run = folder / f"{name}-{role}"
            run.mkdir()
            env = peers.env(run, f"bench-{name}-{role}", **extra)
            env = {k: v for k, v in env.items() if k not in drop}
            daemons[role] = (Daemon.start(env, run / "daemon.log"), run)
        for daemon, run in daemons.values():
            _bound(run, daemon)
        time.sleep(3.0)  # past start-up work (qBittorrent read-back, discovery)
        idle, twin = daemons["idle"][0], daemons["busy"][0]
        binds0 = len(peers.gateway.stats().bound_ports)
        cpu0 = task_cpu_seconds(idle.process.pid), task_cpu_seconds(twin.process.pid)
        woke0 = wakeups(idle.process.pid)
        time.sleep(seconds)
        binds = len(peers.gateway.stats().bound_ports) - binds0
        idle_cpu = task_cpu_seconds(idle.process.pid) - cpu0[0]
        busy_cpu = task_cpu_seconds(twin.process.pid) - cpu0[1]
        woke = wakeups(idle.process.pid) - woke0
        for daemon, _ in daemons.values():
            if daemon.problem():
                raise BenchError(daemon.problem() or "")
        return idle_cpu, woke, busy_cpu, binds
    finally:
        for daemon, _ in daemons.values():
            daemon.stop()


def daemon_per_hour(
    peers: Peers, folder: Path, seconds: float, results: Results, *, qbt_check: float
) -> None:
    """Files only, then MQTT + qBittorrent: idle CPU and wake-ups, keep-alive cost, per hour.

    The drift check runs every QBITTORRENT_CHECK_INTERVAL (300 s by default), rarer than
    the idle window is long: it is priced apart (``qbt_check``, one cold check) and added
    at its default rate, instead of being caught or missed by the window.
    """
    checks_per_hour = 3600 / QBT_CHECK_DEFAULT
    for label, name, drop, checks in (
        ("files only", "files", OFF, 0.0),
        ("qBittorrent", "qbt", MQTT, checks_per_hour),
        ("MQTT + qBittorrent", "full", frozenset(), checks_per_hour),
    ):
        busy = {"PORT_FORWARD_REFRESH_INTERVAL": "1"}
        idle_cpu, woke, busy_cpu, binds = _pair(peers, folder, name, seconds, drop=drop, busy=busy)
        keepalive = max(0.0, busy_cpu - idle_cpu) / max(1, binds - 1)
        idle_hour = idle_cpu / seconds * 3600
        per_hour = idle_hour + KEEPALIVES_PER_HOUR * keepalive + checks * qbt_check
        results.add(f"pia-mqtt {label}: CPU per hour (ms)", per_hour * 1000)
        results.add(f"pia-mqtt {label}: wake-ups per second (/s)", woke / seconds)
        results.add(f"pia-mqtt {label}: keep-alive CPU (ms)", keepalive * 1000)
        results.notes[f"pia-mqtt {label}: CPU per hour (ms)"] = (
            f"idle {idle_cpu * 1000:.1f} ms in {seconds:.0f} s -> {idle_hour * 1000:.1f} ms/h, "
            f"+ 4 keep-alives x {keepalive * 1000:.2f} ms (twin at 1 s: {binds} binds)"
            + (f", + {checks:.0f} drift checks x {qbt_check * 1000:.2f} ms" if checks else "")
        )


def qbt_check_cost(peers: Peers, folder: Path, seconds: float, results: Results) -> float:
    """CPU of one qBittorrent drift check as the default rate sees it: a cold connection.

    The twin checks every COLD_CHECK s, longer than qBittorrent keeps an idle connection
    (7 s), so each check connects again as a check every 300 s does; the idle daemon (300 s)
    runs none in the window.
    """
    idle_cpu, _, busy_cpu, _ = _pair(
        peers, folder, "qbtcheck", seconds, drop=MQTT,
        busy={"QBITTORRENT_CHECK_INTERVAL": str(COLD_CHECK)},
    )  # fmt: skip
    per_check = max(0.0, busy_cpu - idle_cpu) / (seconds / COLD_CHECK)
    results.add("qBittorrent drift check CPU (ms)", per_check * 1000)
    return per_check


def check_costs(peers: Peers, folder: Path, seconds: float, results: Results) -> None:
    """What one gluetun port check costs the daemon."""
    from tests.fake_gluetun import FakeGluetun  # noqa: PLC0415

    with FakeGluetun() as gluetun:
        extra = {"GLUETUN_CONTROL_URL": gluetun.url}
        idle_cpu, _, busy_cpu, _ = _pair(
            peers, folder, "gluetuncheck", seconds, drop=OFF,
            busy={**extra, "GLUETUN_CHECK_INTERVAL": "1"},
        )  # fmt: skip
        base_idle, _, with_default, _ = _pair(
            peers, folder, "gluetunidle", seconds, drop=OFF, busy=extra
        )
    # busy - idle holds the pushes too: the twin with the default 30 s prices those.
    per_check = ((busy_cpu - idle_cpu) - (with_default - base_idle)) / (seconds - seconds / 30)
    results.add("gluetun port check CPU (ms)", per_check * 1000)


def official_loop(peers: Peers, folder: Path, runs: int, results: Results) -> None:
    """PIA's loop body ``runs`` times against the simulator; CPU per body and per hour."""
    lease = _lease(peers, folder)
    payload = json.loads(base64.b64decode(lease["payload"] + "=="))
    env = {
        "PATH": "/usr/bin:/bin",
        "RUNS": str(runs),
        "PF_HOSTNAME": peers.gateway.cn,
        "PF_GATEWAY": peers.gateway.host,
        "PF_PORT": str(peers.gateway.port),
        "PIA_CA": str(peers.sim.ca_file),
        "payload": lease["payload"],
        "signature": lease["signature"],
        "expires_at": payload["expires_at"],
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["bash", "-c", OFFICIAL_BODY], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"official loop failed: {done.stderr[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    body = cpu / runs
    results.add("official loop: one body (ms)", body * 1000)
    results.add("official loop: CPU per hour (ms)", KEEPALIVES_PER_HOUR * body * 1000)
    results.notes["official loop: CPU per hour (ms)"] = (
        f"{runs} bodies (curl, jq, 2 x date) by one bash: {cpu * 1000:.0f} ms CPU; "
        "4 bodies per hour (sleep 900 between them costs nothing)"
    )


def _lease(peers: Peers, folder: Path) -> dict[str, str]:
    """A payload and signature from the simulator, got the way the daemon gets them."""
    run = folder / "official"
    run.mkdir()
    env = {k: v for k, v in peers.env(run, "bench-official").items() if k not in OFF}
    done = subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "once"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"pia-mqtt once failed: {done.stderr[-1000:]}")
    reply = json.loads(json.loads((run / "pia-lease.json").read_text())["reply"])
    return {"payload": reply["payload"], "signature": reply["signature"]}


def ratios(results: Results) -> None:
    """The daemon's hour against the official loop's, measured in the same run."""
    official = results.samples["official loop: CPU per hour (ms)"][-1]
    for label in ("files only", "MQTT + qBittorrent"):
        ours = results.samples[f"pia-mqtt {label}: CPU per hour (ms)"][-1]
        results.add(f"{label} / official loop (ratio)", ours / official)


def in_namespace(folder: Path, seconds: float, runs: int, results: Results) -> None:
    """Run :func:`main` in a network namespace of its own (loopback only), like a container.

    The host's own interfaces change all the time on a shared machine (other jobs' veth
    pairs): each change rightly wakes the route watch, which is not what idle costs.
    """
    from tests.netns import NetLab, remove_stale_namespaces  # noqa: PLC0415

    remove_stale_namespaces()
    lab = NetLab("hour")
    try:
        ns = lab.namespace("idle")
        inner = lab.start(
            ns, "hourly",
            [sys.executable, "-m", "benchmarks.hourly", "--folder", str(folder),
             "--seconds", str(seconds), "--runs", str(runs)],
        )  # fmt: skip
        line = ""
        while not line.startswith("{"):
            line = inner.readline(timeout=120 + 12 * seconds)
        doc = json.loads(line)
        if "error" in doc:
            raise BenchError(f"hourly: {doc['error']}\n{inner.text()[-3000:]}")
        for name, values in doc["samples"].items():
            for value in values:
                results.add(name, value)
        results.notes.update(doc["notes"])
    finally:
        lab.close()


def main() -> int:
    """Inside the namespace: peers, the official loop, the daemons; one JSON line out."""
    import argparse  # noqa: PLC0415

    from benchmarks.scenarios import Results  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results = Results()
    try:
        with Peers(args.folder / "peers") as peers:
            official_loop(peers, args.folder, args.runs, results)
            qbt_check = qbt_check_cost(peers, args.folder, args.seconds, results)
            daemon_per_hour(peers, args.folder, args.seconds, results, qbt_check=qbt_check)
            ratios(results)
            check_costs(peers, args.folder, args.seconds, results)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"samples": results.samples, "notes": results.notes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark and print one table: ``python -m benchmarks.run [--runs N] [--quick]``.

Needs root (network namespaces), ``mosquitto``, ``qbittorrent-nox``, ``iproute2``,
``nftables``, ``curl`` and ``jq`` (PIA's own loop, measured next to the daemon), and the
test extra (``pip install -e '.[test]'``). Every peer runs on 127.0.0.1 or inside
namespaces made here; nothing is sent anywhere else. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py` from a fresh clone
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.detection import detection_times
from benchmarks.endpoint import ROW as HTTP_RSS_ROW
from benchmarks.endpoint import http_endpoint
from benchmarks.hourly import in_namespace
from benchmarks.netmove import gateway_moves
from benchmarks.peers import REPO, Peers
from benchmarks.scenarios import Results, keepalive_cpu, port_changes, start_and_restart

TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "restart (saved lease): same port everywhere": ("< 1.5 s", lambda v: v < 1.5),
    "VPN move, server keeps the port: new route -> all sinks": ("< 300 ms", lambda v: v < 0.3),
    "VPN move, new port: new route -> all sinks": ("< 300 ms", lambda v: v < 0.3),
    "detection: hop probe, router-level VPN": ("< 2 s", lambda v: v < 2),
    "detection: sweep 0-255, ICMP dropped": ("< 30 s", lambda v: v < 30),
    "files only / official loop (ratio)": ("<= 0.33", lambda v: v <= 1 / 3),
    "MQTT + qBittorrent / official loop (ratio)": ("<= 1", lambda v: v <= 1),
    "port change: bound -> all sinks": ("< 100 ms", lambda v: v < 0.1),
    "RSS 5 s after start (MiB)": ("<= 45 MiB", lambda v: v <= 45),
    "RSS after 1 h fake-clock keep-alives (MiB)": ("<= 45 MiB", lambda v: v <= 45),
    HTTP_RSS_ROW: ("<= 45 MiB", lambda v: v <= 45),
    "keep-alive CPU per cycle (ms)": ("<= 18 ms", lambda v: v <= 18),
    "keep-alive CPU per cycle, all windows (ms)": ("<= 18 ms", lambda v: v <= 18),
}
UNITLESS = ("(MiB)", "(ms)", "(ratio)", "(/s)")

IMPORT_CODE = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
RUN_MODULES = (
    "pia_mqtt.cli, pia_mqtt.settings, pia_mqtt.logs, pia_mqtt.wiring, pia_mqtt.sinks.portfiles, "
    "pia_mqtt.pia.manager, pia_mqtt.pia.client, pia_mqtt.gateway.finder, pia_mqtt.mqtt.sink, pia_mqtt.torrent.qbittorrent, "
    "pia_mqtt.torrent.sink"
)


def _python(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=REPO, timeout=60)
    return time.perf_counter() - started


def import_times(runs: int, results: Results) -> None:
    """Import of ``pia_mqtt``, of everything ``run`` imports, and whole ``--version`` runs."""
    for _ in range(runs):
        for name, module in (("import pia_mqtt", "pia_mqtt"), ("imports of `run`", RUN_MODULES)):
            done = subprocess.run(
                [sys.executable, "-c", IMPORT_CODE.format(m=module)],
                check=True, capture_output=True, text=True, cwd=REPO, timeout=60,
            )  # fmt: skip
            results.add(name, float(done.stdout))
        results.add("python -c pass (interpreter start)", _python("-c", "pass"))
        results.add(
            "python -m pia_mqtt --version (whole process)", _python("-m", "pia_mqtt", "--version")
        )


def fake_hour(peers: Peers, folder: Path, results: Results) -> None:
    """The 1-hour fake-clock run in its own process (``benchmarks.fakehour``)."""
    run = folder / "hour"
    run.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fakehour", "60"],
        check=False,
        env=peers.env(run, "bench-hour"), cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"fake hour failed: {done.stdout}\n{done.stderr}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    # That process also holds time-machine (several MiB), so its absolute RSS is not the
    # daemon's: what it measures is the growth over the hour, added to the real daemon's.
    growth = doc["rss_end_mib"] - doc["rss_start_mib"]
    idle = statistics.median(results.samples["RSS 5 s after start (MiB)"])
    results.add("RSS growth over 1 h of fake-clock keep-alives (MiB)", growth)
    results.add("RSS after 1 h fake-clock keep-alives (MiB)", idle + growth)
    results.notes["RSS after 1 h fake-clock keep-alives (MiB)"] = (
        f"median RSS 5 s after start ({idle:.1f}) + the growth over one fake hour "
        f"({doc['rss_start_mib']:.1f} -> {doc['rss_end_mib']:.1f} MiB in a process that also "
        f"holds time-machine, {doc['time_machine_mib']:.1f} MiB); status {doc['status']}"
    )
    results.add("CPU per 15 min, everything (ms)", doc["cpu_s"] * 1000 * 900 / doc["fake_seconds"])
    results.notes["CPU per 15 min, everything (ms)"] = (
        f"fake hour: {doc['cpu_s'] * 1000:.0f} ms CPU in {doc['real_s']:.1f} s real: 4 keep-alives, "
        "60 qBittorrent checks, MQTT (route events: no watch job)"
    )


def machine() -> str:
    """nproc, CPU model, RAM, Python: the figures' context."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} CPUs, {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"Python {platform.python_version()} ({platform.machine()}), {platform.release()}"
    )


def _fmt(name: str, value: float) -> str:
    if name.endswith("(ratio)"):
        return f"{value:.2f}"
    if name.endswith(UNITLESS):
        return f"{value:.1f}"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def table(results: Results) -> str:
    """Median and min/max of every row, with the target and whether it is met."""
    lines = [
        f"{'measurement':<52} {'n':>3} {'median':>9} {'min':>9} {'max':>9}  target",
        "-" * 100,
    ]
    for name, values in results.samples.items():
        median = statistics.median(values)
        target = ""
        if name in TARGETS:
            text, ok = TARGETS[name]
            target = f"{text} {'met' if all(ok(v) for v in values) else 'MISSED'}"
        lines.append(
            f"{name:<52} {len(values):>3} {_fmt(name, median):>9} {_fmt(name, min(values)):>9} "
            f"{_fmt(name, max(values)):>9}  {target}"
        )
    lines += [f"  {name}: {note}" for name, note in results.notes.items()]
    return "\n".join(lines)


def main() -> int:
    """Parse arguments, run every benchmark, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--runs", type=int, default=5, help="cold starts and restarts (5)")
    parser.add_argument("--presses", type=int, default=10, help="new_port presses (10)")
    parser.add_argument("--moves", type=int, default=3, help="gateway moves per kind (3)")
    parser.add_argument("--cpu-windows", type=int, default=5, help="CPU windows (5)")
    parser.add_argument("--cpu-seconds", type=float, default=10, help="each CPU window (10 s)")
    parser.add_argument("--hour-seconds", type=float, default=60, help="idle window (60 s)")
    parser.add_argument("--official-runs", type=int, default=20, help="official bodies (20)")
    parser.add_argument("--detections", type=int, default=5, help="hop-probe detections (5)")
    parser.add_argument(
        "--no-netns", action="store_true", help="skip everything that needs namespaces"
    )
    args = parser.parse_args()
    began = time.monotonic()
    results = Results()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pia-bench-") as tmp:
        folder = Path(tmp)
        import_times(args.runs, results)
        with Peers(folder / "peers") as peers:
            print("peers up; cold starts and restarts...", flush=True)
            for index in range(args.runs):
                start_and_restart(peers, folder, index, results)
            print("port changes...", flush=True)
            port_changes(peers, folder, args.presses, results)
            print("keep-alive CPU...", flush=True)
            keepalive_cpu(peers, folder, args.cpu_windows, args.cpu_seconds, results)
            print("status endpoint...", flush=True)
            http_endpoint(peers, folder, args.runs, results)
            print("one fake hour...", flush=True)
            fake_hour(peers, folder, results)
            material = folder / "peers" / "sim"
            if not args.no_netns:
                for foreign, name in ((True, "server keeps the port"), (False, "new port")):
                    print(f"VPN moves ({name})...", flush=True)
                    for seconds in gateway_moves(
                        material, folder / f"move-{foreign}", args.moves, foreign=foreign
                    ):
                        results.add(f"VPN move, {name}: new route -> all sinks", seconds)
                print("gateway detection in the router-level network...", flush=True)
                detection_times(material, folder / "detect", args.detections, results)
        if not args.no_netns:
            print("CPU per hour side by side with the official loop...", flush=True)
            hour = folder / "hourly"
            hour.mkdir()
            in_namespace(hour, args.hour_seconds, args.official_runs, results)
    print()
    print(table(results))
    print(f"\nwhole run: {time.monotonic() - began:.0f} s; {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The status endpoint's cost: RSS with ``HTTP_PORT`` set, and how fast it answers.

``python -m benchmarks.run`` calls :func:`http_endpoint`; it also runs alone:
``python -m benchmarks.endpoint [--runs N]`` (needs the same peers as the whole run).
Each run starts the real daemon with every peer (qBittorrent, MQTT) and the endpoint on
a free loopback port, waits for ``/readyz``, serves the page and ``/metrics`` a few dozen
times (so the RSS includes what answering costs), and reads VmRSS 5 s after start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.peers import Daemon, Peers, running
from benchmarks.scenarios import RSS_AFTER, Results
from tests.fixtures.common import free_port

ROW = "RSS 5 s after start, HTTP endpoint on (MiB)"
REQUESTS = 25


def _get(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback http
            reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - started


def http_endpoint(peers: Peers, folder: Path, runs: int, results: Results) -> None:
    """RSS with the endpoint on (target 45 MiB), and the time to answer / and /metrics."""
    for index in range(runs):
        run = folder / f"http{index}"
        run.mkdir()
        port = free_port()
        env = peers.env(run, f"bench-http-{index}", HTTP_PORT=str(port), HTTP_ADDRESS="127.0.0.1")
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        with running(Daemon.start(env, run / "daemon.log")) as daemon:
            while _safe_status(f"{base}/readyz") != 200:
                if (problem := daemon.problem()) or time.monotonic() - started > 30:
                    raise RuntimeError(problem or "the endpoint never became ready")
                time.sleep(0.05)
            results.add("HTTP endpoint: start until /readyz is 200", time.monotonic() - started)
            for path in ("/", "/metrics"):
                times = [_get(base + path)[1] for _ in range(REQUESTS)]
                results.add(f"HTTP endpoint: GET {path} (median of {REQUESTS})",
                            statistics.median(times))  # fmt: skip
            time.sleep(max(0.0, started + RSS_AFTER - time.monotonic()))
            results.add(ROW, daemon.rss_mib())
    if "RSS 5 s after start (MiB)" in results.samples:
        without = statistics.median(results.samples["RSS 5 s after start (MiB)"])
        results.notes[ROW] = (
            f"same peers as the row without the endpoint ({without:.1f} MiB median): the "
            f"endpoint adds {statistics.median(results.samples[ROW]) - without:+.1f} MiB"
        )


def _safe_status(url: str) -> int:
    try:
        return _get(url)[0]
    except OSError:
        return 0


def baseline(peers: Peers, folder: Path, runs: int, results: Results) -> None:
    """The same daemon without HTTP_PORT (standalone runs only; the whole run has the row)."""
    for index in range(runs):
        run = folder / f"base{index}"
        run.mkdir()
        started = time.monotonic()
        with running(Daemon.start(peers.env(run, f"bench-base-{index}"), run / "d.log")) as daemon:
            port_file = run / "pia-port.txt"
            while not port_file.exists():
                if (problem := daemon.problem()) or time.monotonic() - started > 30:
                    raise RuntimeError(problem or "no port within 30 s")
                time.sleep(0.05)
            time.sleep(max(0.0, started + RSS_AFTER - time.monotonic()))
            results.add("RSS 5 s after start (MiB)", daemon.rss_mib())


def main() -> int:
    """Run only this benchmark (and the same daemon without the endpoint) and print the rows."""
    from benchmarks.run import table  # noqa: PLC0415 - run imports this module

    parser = argparse.ArgumentParser(prog="python -m benchmarks.endpoint")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = Results()
    with (
        tempfile.TemporaryDirectory(prefix="pia-bench-http-") as tmp,
        Peers(Path(tmp) / "peers") as peers,
    ):
        baseline(peers, Path(tmp), args.runs, results)
        http_endpoint(peers, Path(tmp), args.runs, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

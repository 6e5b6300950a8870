"""The status endpoint seen by real clients: Prometheus scraping it, Chromium rendering it.

The daemon is the real ``pia-mqtt run`` (or ``demo``) process. Prometheus runs on a free
loopback port with its own config and storage, and the test reads what it scraped through
its query API. Chromium contacts outside services on its own, so it runs inside a network
namespace that has only loopback, together with ``pia-mqtt demo`` (simulator included):
nothing it tries can leave that namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import eventually, free_port
from tests.fixtures.prometheus import Prometheus, promtool_check, require
from tests.netns import NetLab, leftover_namespaces, remove_stale_namespaces

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
)  # fmt: skip
NS_HTTP_PORT = 8976  # the documented default works here: the namespace is empty


@pytest.fixture
def http_daemon(
    pia_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], int]]]:
    """Start `pia-mqtt run` against the simulator with the endpoint on a free loopback port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*, http: bool = True) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        endpoint = {"HTTP_PORT": str(port), "HTTP_ADDRESS": "127.0.0.1"} if http else {}
        log = (tmp_path / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pia_mqtt", "run"],
            env={**keep, **pia_env, **endpoint},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        started.append(proc)
        return proc, port

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def fetch(url: str) -> str:
    """GET a loopback URL as text."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def try_fetch(url: str) -> str:
    """GET a loopback URL as text; empty while nothing answers yet."""
    try:
        return fetch(url)
    except OSError:
        return ""


@pytest.mark.slow
def test_prometheus_scrapes_the_port_that_is_in_the_port_file(
    http_daemon: Callable[..., tuple[subprocess.Popen[bytes], int]],
    prometheus: Callable[[list[str]], Prometheus],
    tmp_path: Path,
) -> None:
    """A real Prometheus sees the target up and its port gauge equal to PORT_FILE's port."""
    proc, http_port = http_daemon()
    port_file = tmp_path / "pia-port.txt"
    port = int(eventually(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30))
    server = prometheus([f"127.0.0.1:{http_port}"])

    def scraped() -> tuple[str, str]:
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        up = server.query('up{job="pia-mqtt"}')
        gauge = server.query("pia_mqtt_forwarded_port")
        assert up
        assert gauge
        return up[0]["value"][1], gauge[0]["value"][1]

    assert eventually(scraped, timeout=30, interval=0.5) == ("1", str(port))
    active = server.query('pia_mqtt_status{status="active"}')
    assert [sample["value"][1] for sample in active] == ["1"]
    live = fetch(f"http://127.0.0.1:{http_port}/metrics")
    done = promtool_check(live)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_without_http_port_nothing_listens_at_all(
    http_daemon: Callable[..., tuple[subprocess.Popen[bytes], int]], tmp_path: Path
) -> None:
    """`pia-mqtt run` without HTTP_PORT holds no listening socket; with it, exactly that port."""
    quiet, _ = http_daemon(http=False)
    serving, http_port = http_daemon()
    for proc in (quiet, serving):
        eventually(lambda p=proc: p.poll() is None and listening_ports(p.pid) is not None)
    port_file = tmp_path / "pia-port.txt"
    eventually(port_file.exists, timeout=30)
    eventually(lambda: listening_ports(serving.pid) == {http_port}, timeout=10)
    assert listening_ports(quiet.pid) == set()


def test_sigterm_stops_within_2_s_while_a_client_holds_the_endpoint(
    http_daemon: Callable[..., tuple[subprocess.Popen[bytes], int]],
) -> None:
    """A silent client on the status endpoint does not delay shutdown past 2 s."""
    proc, http_port = http_daemon()
    # Ready means the loop runs (signal handlers are installed before it starts).
    eventually(lambda: "ok" in try_fetch(f"http://127.0.0.1:{http_port}/readyz"), timeout=30)
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as silent:
        silent.sendall(b"GET / HTTP/1.0\r\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2) == 0


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """A NetLab whose namespaces and processes are all gone after the test."""
    remove_stale_namespaces()
    netlab = NetLab("http")
    try:
        yield netlab
    finally:
        netlab.close()
        assert not leftover_namespaces(netlab.prefix)


@pytest.mark.netns
@pytest.mark.slow
def test_chromium_renders_the_status_page_inside_a_loopback_only_namespace(
    lab: NetLab, tmp_path: Path, pia_ca_material: Path
) -> None:
    """The page as a browser shows it: a screenshot in the artefacts, the port read from the DOM."""
    chromium = require("chromium", "chromium")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for the network namespace")
    ns = lab.namespace("browser")
    links = ns.run("ip", "-o", "link").stdout.splitlines()
    assert [line.split(": ")[1] for line in links] == ["lo"]  # nothing but loopback here
    demo = tmp_path / "demo"
    # The simulator's CA material, made once per session (its RSA key is the slow part).
    shutil.copytree(pia_ca_material, demo / "simulator", ignore=shutil.ignore_patterns("servers"))
    daemon = lab.start(
        ns, "demo",
        [sys.executable, "-m", "pia_mqtt", "demo", "--dir", str(demo), "--interval", "30"],
        env={"HTTP_PORT": str(NS_HTTP_PORT), "HTTP_ADDRESS": "127.0.0.1"},
    )  # fmt: skip
    port_file = demo / "pia-port.txt"
    eventually(lambda: port_file.exists() or daemon.process.poll() is not None, timeout=60)
    assert daemon.process.poll() is None, daemon.text()
    url = f"http://127.0.0.1:{NS_HTTP_PORT}/"
    fetch_in_ns = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())"
    eventually(
        lambda: '"active"' in ns.run(sys.executable, "-c", fetch_in_ns, f"{url}status").stdout,
        timeout=30,
    )

    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "status-page.png"
    browser = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    taken = ns.run(*browser, "--window-size=1000,1100", f"--screenshot={shot}", url, timeout=90)
    assert shot.exists(), taken.stderr[-3000:]
    print(f"status page screenshot: {shot}")
    dumped = ns.run(*browser, "--dump-dom", url, timeout=90)
    shown = re.search(r'<div class="port" id="port">(\d+)</div>', dumped.stdout)
    assert shown is not None, dumped.stdout[-2000:] + dumped.stderr[-2000:]
    assert int(shown.group(1)) == int(port_file.read_text())
    assert '<span class="status" id="status"' in dumped.stdout

"""Network namespaces for tests: a private little network that never touches the host's.

Every namespace is created here (``ip netns add``), joined to others only by veth pairs
made here, and deleted by :meth:`NetLab.close` together with every process started in it.
Addresses given to these interfaces exist only inside the namespaces, so probing them
sends nothing to the host's real network. Needs root and iproute2 (``/usr/sbin/ip``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

IP = "ip"
REPO = Path(__file__).resolve().parent.parent


class NetnsError(RuntimeError):
    """An ``ip`` command failed while building the test network."""


def run_ip(*args: str) -> str:
    """Run ``ip args`` and return stdout; raise with stderr when it fails."""
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Netns:
    """One namespace made by a :class:`NetLab`."""

    name: str

    def ip(self, *args: str) -> str:
        """Run ``ip -n NAME args`` (configure this namespace)."""
        return run_ip("-n", self.name, *args)

    def argv(self, *argv: str) -> list[str]:
        """Build the argv that runs ``argv`` inside this namespace."""
        return [IP, "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside this namespace to completion (output captured)."""
        return subprocess.run(
            self.argv(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            cwd=REPO,
        )

    def python(
        self, code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> Any:
        """Run Python ``code`` (with ``args``) in the namespace; it prints one JSON document."""
        done = self.run(sys.executable, "-c", code, *args, env=child_env(env), timeout=timeout)
        if done.returncode != 0:
            raise NetnsError(f"python in {self.name} failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Build the environment for processes in a namespace: the repo importable.

    Nothing else is inherited that could point the daemon elsewhere (no PIA_* or MQTT_*
    from the developer's shell).
    """
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TZ"}}
    keep["PYTHONPATH"] = str(REPO)
    keep["PYTHONUNBUFFERED"] = "1"
    return keep | (extra or {})


@dataclass
class Started:
    """A process running inside a namespace, with its output collected line by line."""

    name: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    def readline(self, timeout: float) -> str:
        """Return the next stdout line; raise with the output so far when none comes in time."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise NetnsError(
                f"{self.name}: no output within {timeout} s (exit status "
                f"{self.process.poll()}):\n" + "".join(self.output)
            ) from None

    def text(self) -> str:
        """Return everything the process printed so far (stdout and stderr)."""
        return "".join(self.output)


class NetLab:
    """Creates namespaces, veth pairs and processes, and removes all of them on close()."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"pmq{os.getpid()}-{tag}"
        self._count = 0
        self._namespaces: list[Netns] = []
        self._started: list[Started] = []

    def namespace(self, role: str) -> Netns:
        """Create a namespace with loopback up; its name holds this process id."""
        self._count += 1
        ns = Netns(f"{self.prefix}-{role}{self._count}")
        run_ip("netns", "add", ns.name)
        self._namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def veth(self, left: Netns, left_if: str, right: Netns, right_if: str) -> None:
        """Join two namespaces with a veth pair named ``left_if``/``right_if``; both up."""
        left.ip(
            "link", "add", left_if, "type", "veth", "peer", "name", right_if, "netns", right.name
        )
        left.ip("link", "set", left_if, "up")
        right.ip("link", "set", right_if, "up")

    def start(
        self, ns: Netns, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> Started:
        """Start ``argv`` inside ``ns``; stdout and stderr are collected in the background."""
        process = subprocess.Popen(
            ns.argv(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(env),
            cwd=REPO,
        )
        started = Started(name, process)
        self._started.append(started)
        assert process.stdout is not None
        started.pump = threading.Thread(
            target=_pump, args=(process.stdout, started), name=f"netns-{name}", daemon=True
        )
        started.pump.start()
        return started

    def stop(self, started: Started, *, timeout: float = 5) -> int:
        """SIGTERM the process (SIGKILL after ``timeout``) and return its exit status."""
        process = started.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        return process.returncode

    def close(self) -> None:
        """Stop every process started here and delete every namespace made here."""
        errors: list[str] = []
        for started in reversed(self._started):
            try:
                self.stop(started)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{started.name}: {exc}")
        for ns in self._namespaces:
            try:
                _kill_leftovers(ns)
            except (NetnsError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{ns.name}: {exc}")
        for started in self._started:
            # The reader thread ends at EOF once the process (and anything it forked) is gone.
            if started.pump is not None:
                started.pump.join(timeout=5)
            if started.process.stdout is not None and not (
                started.pump and started.pump.is_alive()
            ):
                started.process.stdout.close()
        for ns in reversed(self._namespaces):
            try:
                run_ip("netns", "del", ns.name)
            except (NetnsError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{ns.name}: {exc}")
        self._started.clear()
        self._namespaces.clear()
        if errors:
            raise NetnsError("cleanup failed: " + "; ".join(errors))


def _pump(stream: IO[str], started: Started) -> None:
    for line in stream:
        started.output.append(line)
        started.lines.put(line)


def _kill_leftovers(ns: Netns) -> None:
    """Kill processes still inside a namespace this lab made (children of ours)."""
    for pid in run_ip("netns", "pids", ns.name).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def leftover_namespaces(prefix: str) -> list[str]:
    """List the namespaces whose name starts with ``prefix`` (to prove cleanup)."""
    names = [line.split()[0] for line in run_ip("netns", "list").splitlines() if line.strip()]
    return [name for name in names if name.startswith(prefix)]


_OWNED = re.compile(r"^pmq(\d+)-")


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by an earlier test run that was killed before its cleanup.

    Only names this module makes (``pmq<pid>-...``) whose pytest process is gone are
    touched; processes still inside them were started by that run.
    """
    removed: list[str] = []
    for name in leftover_namespaces("pmq"):
        match = _OWNED.match(name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        _kill_leftovers(Netns(name))
        run_ip("netns", "del", name)
        removed.append(name)
    return removed


# The router-level VPN network (issue 15): every address below exists only in these
# namespaces. 198.18.0.0/15 is the benchmarking range, never routed on the internet.
LAN_CLIENT, LAN_ROUTER = "192.168.50.10", "192.168.50.1"
TUNNEL_ROUTER, PIA_SERVER = "10.13.128.2", "10.13.128.1"
PUBLIC_SERVER, PUBLIC_TARGET = "198.18.0.1", "198.18.0.100"


@dataclass
class RouterLevel:
    """client -> router (forwarding, its default route into the tunnel) -> PIA server -> public.

    ``server`` holds ``PIA_SERVER`` (10.13.128.1), where the simulator's gateway runs;
    ``public`` holds ``PUBLIC_TARGET``, the address the hop probe sends toward.
    """

    client: Netns
    router: Netns
    server: Netns
    public: Netns


def router_level(
    lab: NetLab, *, client: Netns | None = None, client_if: str = "eth0"
) -> RouterLevel:
    """Build the router-level VPN network; ``client`` may be made by the caller (Multus)."""
    client = client or lab.namespace("cl")
    router, server, public = lab.namespace("rt"), lab.namespace("pia"), lab.namespace("pub")
    lab.veth(client, client_if, router, "lan0")
    lab.veth(router, "tun0", server, "tun0")
    lab.veth(server, "out0", public, "eth0")
    client.ip("addr", "add", f"{LAN_CLIENT}/24", "dev", client_if)
    router.ip("addr", "add", f"{LAN_ROUTER}/24", "dev", "lan0")
    router.ip("addr", "add", f"{TUNNEL_ROUTER}/24", "dev", "tun0")
    server.ip("addr", "add", f"{PIA_SERVER}/24", "dev", "tun0")
    server.ip("addr", "add", f"{PUBLIC_SERVER}/24", "dev", "out0")
    public.ip("addr", "add", f"{PUBLIC_TARGET}/24", "dev", "eth0")
    client.ip("route", "add", "default", "via", LAN_ROUTER)
    router.ip("route", "add", "default", "via", PIA_SERVER)
    server.ip("route", "add", "192.168.50.0/24", "via", TUNNEL_ROUTER)
    public.ip("route", "add", "default", "via", PUBLIC_SERVER)
    for ns in (router, server):
        # /proc/sys/net shows the namespace of the process that writes it (no procps needed).
        done = ns.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        if done.returncode != 0:
            raise NetnsError(f"ip_forward in {ns.name}: {done.stderr.strip()}")
    return RouterLevel(client, router, server, public)


def drop_icmp(ns: Netns) -> None:
    """Drop every ICMP packet the namespace forwards or sends (the hop probe goes blind).

    Needs nftables' ``nft``: missing, the test fails under ``CI=true`` and skips locally.
    """
    if shutil.which("nft") is None:
        from tests.fixtures.peersroot import missing_peer  # pytest: tests only, not benchmarks

        missing_peer("nft is not installed: apt-get install nftables")
    rules = (
        "table inet pmq_drop_icmp {\n"
        " chain forward_icmp { type filter hook forward priority 0; meta l4proto icmp drop; }\n"
        " chain output_icmp { type filter hook output priority 0; meta l4proto icmp drop; }\n"
        "}\n"
    )
    done = subprocess.run(
        ns.argv("nft", "-f", "-"),
        check=False,
        input=rules,
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        raise NetnsError(f"nft in {ns.name}: {done.stderr.strip()} (apt-get install nftables)")

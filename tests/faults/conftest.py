"""Helpers for the fault tests.

run the real daemon as a process, as uid 1000 if asked, inside a private mount namespace where a
test can make ``/config`` read-only or full. Everything here runs as root, so permission bits alone
prove nothing: the process under test drops to uid 1000 with ``setpriv``. Python and its packages
may live under a folder uid 1000 cannot enter (``/root/.pyenv``); inside the private namespace a
tmpfs with mode 0755 is laid over such a folder and only the interpreter's own folders are bound
back, read-only for the host (nothing outside the namespace changes).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pia_mqtt import redact
from pia_mqtt.core.model import Sink
from pia_mqtt.simulator.pia import PiaSimulator
from tests.fixtures.pia import SIM_PASS, SIM_USER
from tests.harness import Daemon as EngineDaemon
from tests.harness import build_daemon

REPO = Path(__file__).resolve().parents[2]
USER = 1000


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """A clean environment for the daemon: PATH, LANG, PYTHONPATH (the repo) and ``extra``."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    return {**base, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1", **extra}


def daemon_env(sim: PiaSimulator, shared: Path, config: Path, **extra: str) -> dict[str, str]:
    """Environment pointing ``pia-mqtt`` at ``sim`` with its files in ``config``.

    The CA files are copied into ``shared`` so that uid 1000 can read them.
    """
    ca = shared / "pia-ca.crt"
    token_ca = shared / "token-ca.crt"
    shutil.copyfile(sim.ca_file, ca)
    shutil.copyfile(sim.token_ca_file, token_ca)
    for path in (ca, token_ca):
        path.chmod(0o644)
    gateway = sim.gateways[0]
    return base_env(
        {
            "HOME": str(shared),
            "PIA_USER": SIM_USER,
            "PIA_PASS": SIM_PASS,
            "PIA_TOKEN_URL": sim.token_url,
            "PIA_CA_CERT": str(ca),
            "PIA_GATEWAY": gateway.host,
            "PIA_GATEWAY_PORT": str(gateway.port),
            "REQUESTS_CA_BUNDLE": str(token_ca),
            "PORT_FILE": str(config / "pia-port.txt"),
            "PORT_DATA_FILE": str(config / "pia-port-data.json"),
            "STATE_FILE": str(config / "pia-lease.json"),
            "GATEWAY_WATCH_INTERVAL": "300",
            **extra,
        }
    )


def _blocked_top(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` that others may not enter (mode lacks o+x)."""
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
            return ancestor
    return None


def python_access_script(stage: Path) -> list[str]:
    """Shell lines (run as root in the namespace) that let uid 1000 run this interpreter."""
    needed = {
        Path(p).resolve()
        for p in (sys.base_prefix, sys.prefix, REPO, Path(sys.executable).resolve().parent)
    }
    by_top: dict[Path, list[Path]] = {}
    for path in sorted(needed):
        top = _blocked_top(path)
        if top is not None:
            by_top.setdefault(top, []).append(path)
    lines: list[str] = []
    count = 0
    for top, paths in by_top.items():
        staged = []
        for path in paths:
            target = stage / str(count)
            count += 1
            lines += [f"mkdir -p {target}", f"mount --bind {shlex.quote(str(path))} {target}"]
            staged.append((path, target))
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(top))}")
        for path, target in staged:
            quoted = shlex.quote(str(path))
            lines += [f"mkdir -p {quoted}", f"mount --bind {target} {quoted}"]
    return lines


@dataclass
class Daemon:
    """A ``pia-mqtt`` process (in its own mount namespace) and its log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    pids: list[int] = field(default_factory=list)

    def log(self) -> str:
        """Everything the daemon logged so far (stderr)."""
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        """True while the daemon runs; fails the test at once (with its log) if it died."""
        assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}:\n{self.log()}"
        return True

    def inside(self, path: Path) -> Path:
        """``path`` as the daemon sees it (through its mount namespace)."""
        return Path(f"/proc/{self.proc.pid}/root") / str(path).lstrip("/")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the daemon and wait for its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # A hang is a bug: SIGABRT makes faulthandler print every thread's stack.
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=10)
            message = f"daemon did not stop within {timeout} s:\n{self.log()}"
            raise AssertionError(message) from None


def start_daemon(
    env: dict[str, str],
    log_path: Path,
    *,
    command: str = "run",
    user: int | None = USER,
    setup: list[str] | None = None,
    stage: Path | None = None,
) -> Daemon:
    """Start ``python -m pia_mqtt COMMAND`` in a private mount namespace.

    ``setup`` lines run first as root inside the namespace (mounts); then the daemon is
    exec'd (as ``user`` unless None), so the process id is the daemon's own.
    """
    lines = ["set -e", *(setup or [])]
    argv = [sys.executable, "-m", "pia_mqtt", command]
    if user is not None:
        lines += python_access_script(stage or log_path.parent / ".stage")
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    lines.append("exec " + shlex.join(argv))
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            env=env,
            cwd=env.get("HOME", str(log_path.parent)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Daemon(proc, log_path)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder under /tmp that uid 1000 can enter (tmp_path lives under a 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix="pia-faults-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test started; any still running is killed at the end."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)
        # Shown by pytest only when the test failed.
        print(f"--- daemon log {daemon.log_path} ---\n{daemon.log()[-4000:]}")


def config_dir(shared: Path, name: str = "config", *, owner: int | None = USER) -> Path:
    """A /config-like folder owned by ``owner`` (uid 1000, like the container's user)."""
    folder = shared / name
    folder.mkdir()
    if owner is not None:
        os.chown(folder, owner, owner)
    return folder


def build(
    sim: PiaSimulator,
    folder: Path,
    *,
    timeout: float = 2.0,
    sinks: list[Sink] | None = None,
    record: bool = True,
) -> EngineDaemon:
    """tests.harness.build_daemon with the gateway watch hourly (no watch noise)."""
    return build_daemon(
        sim,
        folder,
        interval=900,
        watch_interval=3600,
        timeout=timeout,
        record=record,
        extra_sinks=sinks,
    )


FUZZ = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
NETWORK_FUZZ = settings(FUZZ, max_examples=60)


@pytest.fixture
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated 'secrets' registered with redact must not leak into other tests."""
    monkeypatch.setattr(redact, "_known", set())


# --- fuzz strategies shared by test_fuzz_pia and test_fuzz_peers ---------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
ports = (
    st.integers(min_value=-5, max_value=70000)
    | st.sampled_from([0, 1, 65535, 65536, -1, 2**63])
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.just("51813")
    | st.none()
)

"""The ``pia-mqtt`` command as a user runs it: real processes against the HTTPS simulator."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pia_mqtt import __version__
from pia_mqtt.simulator.pia import PiaSimulator
from tests.fixtures.common import eventually, free_port

DISTINCT_PASSWORD = "Zq7-distinct-PIA-pass-93x"


def _env(extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: nothing from the host's PIA_/MQTT_/QBITTORRENT_ variables."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYENV_ROOT")}
    return {**base, **extra}


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", *args],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version_prints_the_package_version() -> None:
    """`pia-mqtt --version` prints the version and exits 0."""
    result = _cli("--version", env={})
    assert (0, f"pia-mqtt {__version__}\n") == (result.returncode, result.stdout)


def test_once_binds_writes_both_files_and_prints_the_port(
    pia_env: dict[str, str], pia_sim: PiaSimulator
) -> None:
    """`once`: token, signature, bind, files written, exit 0, summary names the port."""
    result = _cli("once", env=pia_env)
    port = pia_sim.gateways[0].stats().bound_ports[0]
    data = json.loads(Path(pia_env["PORT_DATA_FILE"]).read_text())
    assert 0 == result.returncode, result.stderr
    assert f"port={port} status=active" in result.stdout
    assert f"{port}\n" == Path(pia_env["PORT_FILE"]).read_text()
    assert (port, "active") == (data["port"], data["status"])


def test_once_twice_keeps_the_same_port(pia_env: dict[str, str], pia_sim: PiaSimulator) -> None:
    """A second run reuses the saved signature: same port, one getSignature in total."""
    first = _cli("once", env=pia_env)
    second = _cli("once", env=pia_env)
    stats = pia_sim.gateways[0].stats()
    assert (0, 0) == (first.returncode, second.returncode)
    assert 1 == stats.signature_requests
    assert stats.bound_ports[0] == stats.bound_ports[1]


def test_bad_configuration_exits_2_listing_every_problem_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """Several bad variables -> exit 2, one message naming each of them, no file created."""
    env = {
        "PIA_PASS": DISTINCT_PASSWORD,
        "PORT_FORWARD_REFRESH_INTERVAL": "1000",
        "MQTT_TOPIC": "pia/#",
        "PIA_GATEWAY": "not-an-ip",
        "PORT_FILE": str(tmp_path / "out" / "pia-port.txt"),
        "PORT_DATA_FILE": str(tmp_path / "out" / "pia-port-data.json"),
        "STATE_FILE": str(tmp_path / "out" / "pia-lease.json"),
    }
    result = _cli("run", env=env)
    assert 2 == result.returncode
    for name in ("PIA_GATEWAY",):
        assert name in result.stderr
    # Field errors come first; fixed, the cross-field checks list the rest together.
    env["PIA_GATEWAY"] = "10.0.0.1"
    result = _cli("run", env=env)
    for name in ("PORT_FORWARD_REFRESH_INTERVAL", "MQTT_TOPIC", "PIA_USER"):
        assert name in result.stderr
    assert 2 == result.returncode
    assert DISTINCT_PASSWORD not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_check_config_prints_masked_settings_and_exits_2_without_credentials(
    tmp_path: Path,
) -> None:
    """check-config masks secrets; without PIA_USER it still prints, then exits 2."""
    env = {"PIA_PASS": DISTINCT_PASSWORD, "PORT_FILE": str(tmp_path / "x" / "p.txt")}
    result = _cli("check-config", env=env)
    shown = json.loads(result.stdout)
    assert 2 == result.returncode
    assert "***" == shown["PIA_PASS"]
    assert str(tmp_path / "x" / "p.txt") == shown["PORT_FILE"]
    assert "PIA_USER" in result.stderr
    assert DISTINCT_PASSWORD not in result.stdout + result.stderr


def test_healthcheck_fails_fresh_passes_after_a_bind_and_fails_when_stale(
    pia_env: dict[str, str], tmp_path: Path
) -> None:
    """Healthy only when the data file shows a bind within two intervals."""
    fresh = _cli("healthcheck", env=pia_env)
    assert 0 == _cli("once", env=pia_env).returncode
    healthy = _cli("healthcheck", env=pia_env)
    data_file = Path(pia_env["PORT_DATA_FILE"])
    data = json.loads(data_file.read_text())
    old = datetime.now(UTC) - timedelta(seconds=2 * 900 + 5)
    data["timestamp"] = old.isoformat(timespec="seconds").replace("+00:00", "Z")
    data_file.write_text(json.dumps(data))
    stale = _cli("healthcheck", env=pia_env)
    assert (1, 0, 1) == (fresh.returncode, healthy.returncode, stale.returncode)
    assert "unhealthy" in stale.stdout


def test_detect_gateway_prints_each_candidate_with_its_verdict(
    pia_env: dict[str, str],
) -> None:
    """detect-gateway: OK with the certificate name; a closed port is reported as refused."""
    ok = _cli("detect-gateway", env=pia_env)
    closed = _cli("detect-gateway", env={**pia_env, "PIA_GATEWAY_PORT": str(free_port())})
    assert 0 == ok.returncode, ok.stderr
    assert "127.0.0.1" in ok.stdout
    assert "sim-gateway-1" in ok.stdout
    assert 1 == closed.returncode
    assert "refused" in closed.stdout


def test_secrets_never_reach_output_or_readable_files(
    pia_env: dict[str, str], pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """No password, token, payload or signature in any output or readable file (DEBUG).

    The state file is the one place allowed to hold the signature, and it is mode 0600.
    """
    pia_sim.users["p7654321"] = DISTINCT_PASSWORD
    env = {**pia_env, "PIA_USER": "p7654321", "PIA_PASS": DISTINCT_PASSWORD, "LOG_LEVEL": "DEBUG"}
    result = _cli("once", env=env)
    state_file = Path(env["STATE_FILE"])
    reply = json.loads(json.loads(state_file.read_text())["reply"])
    token = json.loads(base64.b64decode(reply["payload"]))["token"]
    secrets = [DISTINCT_PASSWORD, token, reply["payload"], reply["signature"]]
    readable = [p for p in tmp_path.iterdir() if p.is_file() and p != state_file]
    texts = [result.stdout, result.stderr, *(p.read_text() for p in readable)]
    assert 0 == result.returncode, result.stderr
    assert 0o600 == state_file.stat().st_mode & 0o777
    assert [] == [s for s in secrets for t in texts if s in t]


def test_run_stops_on_sigterm_within_two_seconds_with_whole_files(
    pia_env: dict[str, str],
) -> None:
    """SIGTERM while running: exit 0 within 2 s; both files hold a complete document."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pia_mqtt", "run"],
        env=_env(pia_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port_file = Path(pia_env["PORT_FILE"])
        eventually(port_file.exists, timeout=30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    print(f"SIGTERM to exit: {took:.3f} s")
    data = json.loads(Path(pia_env["PORT_DATA_FILE"]).read_text())
    assert 0 == code, stderr
    assert took < 2.0
    assert f"{data['port']}\n" == port_file.read_text()
    assert "pia-mqtt stopped" in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_run_stops_on_sigint_too(pia_env: dict[str, str], signum: int) -> None:
    """Ctrl-C (SIGINT) ends the daemon cleanly with status 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pia_mqtt", "run"],
        env=_env(pia_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(Path(pia_env["PORT_FILE"]).exists, timeout=30)
        proc.send_signal(signum)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 0 == code


def test_start_removes_temp_files_an_interrupted_write_left(pia_env: dict[str, str]) -> None:
    """A `.pia-port.txt.XXXX.tmp` left by a SIGKILL mid-write is deleted at the next start."""
    folder = Path(pia_env["PORT_FILE"]).parent
    stale = [folder / ".pia-port.txt.ab12cd.tmp", folder / ".pia-lease.json.ef34gh.tmp"]
    for path in stale:
        path.write_text("half a file")
    result = _cli("once", env=pia_env)
    assert 0 == result.returncode, result.stderr
    assert [False, False] == [path.exists() for path in stale]
    assert Path(pia_env["PORT_FILE"]).exists()

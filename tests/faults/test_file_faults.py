"""Files: /config read-only, not writable, full, deleted while running; a corrupt state file.

The process cases run the real daemon as uid 1000 (root ignores permission bits) inside a
private mount namespace: a read-only bind mount, or a 16 KiB tmpfs filled to the brim.
The end state is checked each time: the port stays bound at PIA, one clear log line, and
the files come back whole once the folder is usable again.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import EventKind, Status
from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import Daemon, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually
from tests.harness import advance, at, build_daemon

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


def _binds(sim: PiaSimulator) -> tuple[int, ...]:
    return sim.gateways[0].stats().bound_ports


@pytest.mark.parametrize(
    ("case", "owner", "reason"),
    [
        ("read-only", 1000, "Read-only file system"),
        ("not-writable", 0, "Permission denied"),
    ],
)
def test_unwritable_config_keeps_the_port_bound_and_says_why_once(
    pia_sim: PiaSimulator,
    shared_dir: Path,
    daemons: list[Daemon],
    case: str,
    owner: int,
    reason: str,
) -> None:
    """/config read-only (bind mount) or owned by root: uid 1000 cannot write there.

    The port is still bound every interval, nothing is written, one ERROR line names
    PORT_FILE/PORT_DATA_FILE and the reason, and SIGTERM still ends the daemon cleanly.
    """
    config = config_dir(shared_dir, owner=owner)
    setup = []
    if case == "read-only":
        setup = [f"mount --bind {config} {config}", f"mount -o remount,bind,ro {config}"]
    env = daemon_env(pia_sim, shared_dir, config, PORT_FORWARD_REFRESH_INTERVAL="1")
    daemon = start_daemon(env, shared_dir / "daemon.log", setup=setup)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and len(_binds(pia_sim)) >= 4, timeout=30)
    code = daemon.stop()
    log = daemon.log()
    file_errors = [line for line in log.splitlines() if "(PORT_FILE/PORT_DATA_FILE)" in line]
    binds = _binds(pia_sim)
    assert 0 == code, log
    assert {binds[0]} == set(binds)
    assert [] == list(config.iterdir())
    assert 1 == len(file_errors), log
    assert reason in file_errors[0]
    assert "ERROR" in file_errors[0]
    assert "STATE_FILE" in log
    assert "pia-mqtt stopped" in log


def test_full_config_is_reported_then_files_and_lease_are_written_once_space_is_back(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """A full /config (16 KiB tmpfs filled up): ENOSPC is logged once, the port stays bound.

    When space comes back the next keep-alive writes both files, and the saved lease (so a
    restart keeps the port) is written too, not only at the next new signature.
    """
    config = config_dir(shared_dir)
    setup = [
        f"mount -t tmpfs -o size=16k,mode=0777 tmpfs {config}",
        f"dd if=/dev/zero of={config}/filler bs=1024 2>/dev/null || true",
    ]
    env = daemon_env(pia_sim, shared_dir, config, PORT_FORWARD_REFRESH_INTERVAL="1")
    daemon = start_daemon(env, shared_dir / "daemon.log", setup=setup)
    daemons.append(daemon)
    eventually(lambda: daemon.running() and len(_binds(pia_sim)) >= 3, timeout=30)
    full_log = daemon.log()
    daemon.inside(config / "filler").unlink()
    port_file = daemon.inside(config / "pia-port.txt")
    state_file = daemon.inside(config / "pia-lease.json")
    eventually(lambda: port_file.exists() and state_file.exists(), timeout=30)
    port = _binds(pia_sim)[0]
    data = json.loads(daemon.inside(config / "pia-port-data.json").read_text())
    saved = json.loads(state_file.read_text())
    port_text = port_file.read_text()
    mode = state_file.stat().st_mode & 0o777
    code = daemon.stop()
    assert 0 == code, daemon.log()
    assert "No space left on device" in full_log
    assert 1 == full_log.count("(PORT_FILE/PORT_DATA_FILE)")
    assert f"{port}\n" == port_text
    assert (port, "active") == (data["port"], data["status"])
    assert port == saved["port"]
    assert 0o600 == mode
    assert "Port files written again" in daemon.log()
    assert {port} == set(_binds(pia_sim))


def test_config_deleted_while_running_is_recreated_with_the_same_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """The whole /config folder removed.

    the next keep-alive recreates both files and the saved lease, so a restart after that still
    keeps the port.
    """
    config = tmp_path / "config"
    config.mkdir()
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, config, interval=900, watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        shutil.rmtree(config)
        advance(daemon.engine, traveller, 900)
        daemon.engine.close()
        restarted = build_daemon(pia_sim, config, interval=900, watch_interval=3600)
        restarted.engine.start()
        advance(restarted.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        assert f"{port}\n" == daemon.port_file.read_text()
        assert (port, "active") == (daemon.data()["port"], daemon.data()["status"])
        assert port == json.loads(daemon.state_file.read_text())["port"]
        assert port == restarted.engine.snapshot.port
        assert 1 == stats.signature_requests
        restarted.engine.close()


@pytest.mark.parametrize(
    "content",
    [
        "",
        '{"reply": "{\\"status\\": \\"OK\\", \\"payl',
        "\x00\x00\x00\x00",
        '{"reply": "not json"}',
        '{"port": 12345}',
        "[1, 2, 3]",
    ],
    ids=["empty", "truncated", "zeros", "reply-not-json", "no-reply", "not-an-object"],
)
def test_corrupt_state_file_gets_a_new_lease_with_a_warning(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    """A corrupt or truncated STATE_FILE.

    one WARNING naming it, a new port, no crash; the state file is replaced by a valid one (0600).
    """
    state = tmp_path / "pia-lease.json"
    state.write_text(content)
    caplog.set_level(logging.INFO)
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = pia_sim.gateways[0].stats().issued_ports[0]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        expected = (
            f"Ignoring saved lease {state}: it is corrupt or truncated; a new port will be "
            "requested"
        )
        assert [expected] == warnings
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert port == daemon.engine.snapshot.port
        assert f"{port}\n" == daemon.port_file.read_text()
        assert port == json.loads(state.read_text())["port"]
        assert 0o600 == state.stat().st_mode & 0o777
        assert [EventKind.PORT_CHANGED] == daemon.recorder.kinds()
        daemon.engine.close()


def test_state_file_that_is_a_folder_is_reported_and_the_port_still_works(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """STATE_FILE path taken by a folder.

    cannot load or save it; the port is bound anyway and the error says the port will change on the
    next restart (names STATE_FILE).
    """
    (tmp_path / "pia-lease.json").mkdir()
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        advance(daemon.engine, traveller, timedelta(minutes=30).total_seconds())
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert 3 == pia_sim.gateways[0].stats().binds_ok
        assert 1 == len([e for e in errors if "STATE_FILE" in e]), errors
        assert "next restart" in next(e for e in errors if "STATE_FILE" in e)
        daemon.engine.close()

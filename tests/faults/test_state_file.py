"""STATE_FILE that is not a small regular file: a FIFO, a huge file, a lease readable by others.

A FIFO must not block the start (and SIGTERM must still end the process), a file far larger
than a lease is not read, and a good lease with a wider mode than 0600 is rewritten 0600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pia_mqtt.errors import OutputError
from pia_mqtt.pia.lease import LeaseStore, parse_signature_reply
from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import Daemon, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually
from tests.test_lease import reply


def _load_in_thread(store: LeaseStore) -> tuple[threading.Thread, list[object]]:
    """Load on a thread, so that a load blocking forever fails the test instead of hanging it."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(store.load()), daemon=True)
    thread.start()
    thread.join(timeout=2.0)
    return thread, out


def _unblock(fifo: Path) -> None:
    """Open the FIFO's other end, so that a reader blocked in open() goes on."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_state_file_is_refused_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """STATE_FILE is a FIFO: the load returns at once with no lease and a warning saying why."""
    fifo = tmp_path / "pia-lease.json"
    os.mkfifo(fifo)
    caplog.set_level(logging.WARNING)
    thread, out = _load_in_thread(LeaseStore(fifo))
    blocked = thread.is_alive()
    _unblock(fifo)
    assert not blocked, "LeaseStore.load blocked on a FIFO"
    assert [None] == out
    assert "not a regular file" in caplog.text


def test_saving_over_a_fifo_is_an_output_error(tmp_path: Path) -> None:
    """Saving to a STATE_FILE that is a FIFO fails naming it; the FIFO is left alone."""
    fifo = tmp_path / "pia-lease.json"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"not a regular file.*STATE_FILE"):
        LeaseStore(fifo).save(parse_signature_reply(reply()))
    assert fifo.is_fifo()


def test_a_state_file_over_64_kib_is_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid lease padded to 100 KiB is refused as too large.

    A lease is a few hundred bytes, so a 1 GiB file is never read into memory.
    """
    path = tmp_path / "pia-lease.json"
    document = json.dumps({"reply": reply()}) + " " * 100_000
    path.write_text(document)
    caplog.set_level(logging.WARNING)
    assert LeaseStore(path).load() is None
    assert "larger than 65536 bytes" in caplog.text


def test_a_readable_good_lease_is_rewritten_with_mode_0600(tmp_path: Path) -> None:
    """A good saved lease with mode 0644 loads and is rewritten 0600 with the same text."""
    path = tmp_path / "pia-lease.json"
    text = json.dumps({"reply": reply(), "port": 47047}) + "\n"
    path.write_text(text)
    path.chmod(0o644)
    lease = LeaseStore(path).load()
    assert lease is not None
    assert (0o600, text) == (path.stat().st_mode & 0o777, path.read_text())


def test_run_with_a_fifo_state_file_binds_a_port_and_stops_on_sigterm(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """`pia-mqtt run` with STATE_FILE a FIFO.

    It starts (a new port is bound and written) and SIGTERM ends it within 2 s.
    """
    config = config_dir(shared_dir, owner=None)
    fifo = config / "pia-lease.json"
    os.mkfifo(fifo)
    env = daemon_env(pia_sim, shared_dir, config)
    daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
    daemons.append(daemon)
    try:
        eventually(lambda: daemon.running() and (config / "pia-port.txt").exists(), timeout=20)
    finally:
        _unblock(fifo)
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - started
    assert (0, True) == (code, fifo.is_fifo()), daemon.log()
    assert elapsed < 2.0
    assert "not a regular file" in daemon.log()

"""pia-mqtt as PID 1 (the container has no init): orphans of the hook are reaped.

The real ``pia-mqtt run`` runs as PID 1 of a PID namespace the test creates
(``unshare --pid --fork --mount-proc``); its PORT_CHANGE_COMMAND backgrounds two
processes that outlive it. Those become pia-mqtt's children when the command exits and
must not stay zombies; the command's own exit status must still be read correctly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pia_mqtt.simulator.pia import PiaSimulator
from tests.faults.conftest import config_dir, daemon_env
from tests.fixtures.common import eventually

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def test_orphans_of_the_hook_are_reaped_when_pia_mqtt_is_pid_1(
    pia_sim: PiaSimulator, shared_dir: Path
) -> None:
    """The hook exits 3 leaving two background sleeps.

    Status 3 is reported, once the sleeps end no zombie stays under pia-mqtt, and SIGTERM
    still ends it with status 0.
    """
    config = config_dir(shared_dir, owner=None)
    command = "sh -c 'sleep 0.5 & sleep 0.5 & exit 3'"
    env = daemon_env(pia_sim, shared_dir, config, PORT_CHANGE_COMMAND=command)
    log_path = shared_dir / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "pia_mqtt"],
            env=env,
            cwd=shared_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        daemon = eventually(lambda: _children(proc.pid), timeout=10)[0]
        eventually(lambda: "exited with status 3" in log_path.read_text(), timeout=30)
        time.sleep(0.6)  # the background sleeps end and are handed to PID 1
        eventually(lambda: [c for c in _children(daemon) if _state(c) == "Z"] == [], timeout=20)
        os.kill(daemon, signal.SIGTERM)
        assert 0 == proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(IndexError, OSError):
                os.kill(_children(proc.pid)[0], signal.SIGKILL)
            proc.wait(timeout=10)
        print(log_path.read_text()[-3000:])


# PID 1 whose main thread never receives SIGCHLD, as when the kernel hands the signal to
# another thread (paho's, the hook's) while the main thread sleeps until the engine's next
# job: a thread like paho's is started first with SIGCHLD open, then the main thread (and so
# every thread started after it) blocks SIGCHLD. It runs one command the way the hook does,
# which leaves a background sleep to PID 1, and then sleeps 30 s in a SimpleQueue like the
# engine's loop.
_PID1_SIGNAL_ON_ANOTHER_THREAD = """
import queue, signal, subprocess, sys, threading
from pia_mqtt.sinks import reaper
threading.Thread(target=threading.Event().wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
reaper.install()
with reaper.spawning() as running:
    proc = subprocess.Popen(["sh", "-c", "sleep 0.3 & exit 0"], start_new_session=True)
    running.add(proc.pid)
proc.wait()
reaper.finished(proc.pid)
print("ran", proc.returncode, flush=True)
try:
    queue.SimpleQueue().get(timeout=30)
except queue.Empty:
    pass
"""


def test_an_orphan_is_reaped_when_sigchld_reaches_another_thread() -> None:
    """PID 1 reaps an orphan at once although SIGCHLD went to a thread other than the main one.

    A Python signal handler runs only on the main thread, and only once it wakes: the
    orphan stayed a zombie until the engine's next job (here the 30 s sleep).
    """
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         _PID1_SIGNAL_ON_ANOTHER_THREAD],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ran 0\n"  # the command's own status was read
        pid1 = _children(proc.pid)[0]
        time.sleep(0.4)  # the background sleep ends and is handed to PID 1
        eventually(lambda: [c for c in _children(pid1) if _state(c) == "Z"] == [], timeout=5)
    finally:
        with contextlib.suppress(IndexError, OSError):
            os.kill(_children(proc.pid)[0], signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

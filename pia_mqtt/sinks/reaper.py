"""Reap orphaned hook processes when pia-mqtt is PID 1 (a container without an init).

A PORT_CHANGE_COMMAND that backgrounds a process (``notify & exit 0``) leaves that process
to PID 1 when it outlives the command. An init (tini, dumb-init) waits for such orphans;
the image runs pia-mqtt itself as PID 1, so without this every one of them would stay a
zombie forever. Active only when ``os.getpid() == 1``; nothing runs otherwise.

Only orphans are reaped: zombie children outside our own session (the hook runs in a
session of its own, and everything it backgrounds stays there) that are not a command
being run right now. Children that :mod:`subprocess` waits for itself (``ip`` during
gateway detection, in our session; the hook command, registered while it runs) are left
to it, so their exit status stays right. Triggered by SIGCHLD (no periodic wake-up) and
after each hook run; zombies are found in ``/proc`` (the container's own).

Reaping runs on :mod:`pia_mqtt.core.signals`' thread, not in a Python signal handler:
those run on the main thread only once it wakes, and a SIGCHLD the kernel hands to another
thread would leave the zombie until the engine's next job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pia_mqtt.core import signals

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

_lock = threading.Lock()  # held while a hook command is started and registered
_running: set[int] = set()
_installed = False


def active() -> bool:
    """Whether this process is PID 1 and so must reap orphans."""
    return os.getpid() == 1


def install() -> None:
    """Reap on SIGCHLD, when PID 1 and on the main thread (signals are set up there)."""
    global _installed  # noqa: PLW0603 - one handler per process
    if _installed or not active() or threading.current_thread() is not threading.main_thread():
        return
    # A Python handler must exist for CPython to write the wakeup fd; it does nothing.
    signal.signal(signal.SIGCHLD, _on_sigchld)
    signals.on([signal.SIGCHLD], _on_signal_thread)
    _installed = True
    log.debug("running as PID 1: orphaned hook processes are reaped")


@contextlib.contextmanager
def spawning() -> Iterator[set[int]]:
    """Hold off reaping while a command is started; add its pid to the yielded set."""
    with _lock:
        yield _running


def finished(pid: int) -> None:
    """The command ``pid`` was waited for by subprocess; reap what it left behind."""
    with _lock:
        _running.discard(pid)
    reap()


def _on_signal_thread(_signum: int) -> None:
    reap()


def _on_sigchld(_signum: int, _frame: object) -> None:
    """Nothing: the signal thread, woken through the wakeup fd, does the reaping."""


def reap() -> int:
    """Reap every orphaned zombie child now; return how many (0 unless PID 1)."""
    if not active():
        return 0
    with _lock:
        return _reap_locked()


def _reap_locked() -> int:
    count = 0
    for pid in _orphan_zombies():
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                count += 1
    return count


def _orphan_zombies() -> list[int]:
    me, session = os.getpid(), os.getsid(0)
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in _running:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
            fields = stat.rpartition(")")[2].split()
            if len(fields) < 4:
                continue
            state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
            if state == "Z" and ppid == me and sid != session:
                found.append(int(entry.name))
    return found

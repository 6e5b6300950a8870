"""Signals served at once, whichever thread the kernel handed them to.

CPython runs a Python signal handler only on the main thread, and only once that thread
runs bytecode again. The kernel hands a process-directed signal (``kill``, SIGCHLD) to any
thread that does not block it; it prefers the main one, but when it picks paho's, the
hook's or the watchdog's, the main thread, asleep in the engine's inbox until its next job
(up to 15 minutes away), runs the handler only then: a SIGTERM would not stop the daemon
within 2 s and an orphan would stay a zombie. CPython's C-level handler also writes the
signal's number to the wakeup fd, from whatever thread took it: one thread of ours, blocked
reading that pipe, calls the callbacks registered here at once. Nothing wakes periodically.

The Python handler must still be installed (CPython writes the fd only for signals that
have one); the callbacks run on the signal thread, so they must be thread-safe.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

_lock = threading.Lock()
_callbacks: dict[int, list[Callable[[int], None]]] = {}
_started = False


def on(signums: Iterable[int], callback: Callable[[int], None]) -> Callable[[], None]:
    """Call ``callback(signum)`` on the signal thread whenever one of ``signums`` arrives.

    Starts the signal thread on first use, which must be on the main thread (the wakeup
    fd is set there). Returns the function that removes the callback again.
    """
    wanted = tuple(dict.fromkeys(int(s) for s in signums))
    with _lock:
        _start_locked()
        for signum in wanted:
            _callbacks.setdefault(signum, []).append(callback)

    def remove() -> None:
        with _lock:
            for signum in wanted:
                found = _callbacks.get(signum, [])
                if callback in found:
                    found.remove(callback)

    return remove


def _start_locked() -> None:
    global _started  # noqa: PLW0603 - one wakeup fd per process, so one thread
    if _started:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("the signal thread is started from the main thread")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_serve, args=(read_end,), name="signals", daemon=True).start()
    _started = True


def _serve(read_end: int) -> None:
    """Read signal numbers from the wakeup pipe; call each one's callbacks once per read."""
    while True:  # the write end stays open as long as the process: no end of file
        for signum in dict.fromkeys(os.read(read_end, 512)):
            with _lock:
                callbacks = list(_callbacks.get(signum, ()))
            for callback in callbacks:
                try:
                    callback(signum)
                except Exception:  # a callback's bug must not end signal handling
                    log.exception("handling signal %d failed", signum)

"""Closing many things within one deadline (shutdown must end within 2 s, DESIGN).

Everything but the last closes at once, each in a daemon thread, until a common deadline;
the last (MQTT, which says ``offline`` after everything else) then gets the time left, at
least ``LAST_SHARE`` of the whole. A hung peer cannot eat the others' time, and a close
that overruns is left to finish on its own while the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pia_mqtt.redact import describe

log = logging.getLogger(__name__)

LAST_SHARE = 0.4


def close_all(closers: Sequence[tuple[str, Callable[[], None]]], *, timeout: float) -> None:
    """Close every ``(name, close)``, the last one last; never wait more than ``timeout``."""
    if not closers:
        return
    *first, last = closers
    started = time.monotonic()
    threads = [_start(name, close) for name, close in first]
    deadline = started + timeout * (1 - LAST_SHARE)
    for (name, _), thread in zip(first, threads, strict=True):
        _wait(name, thread, deadline)
    _wait(last[0], _start(*last), started + timeout)


def _start(name: str, close: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            close()
        except Exception as exc:
            # Shutting down: a failing close is worth a line, never a hang or a traceback.
            log.warning("closing %s failed: %s", name, describe(exc))

    thread = threading.Thread(target=run, name=f"close-{name}", daemon=True)
    thread.start()
    return thread


def _wait(name: str, thread: threading.Thread, deadline: float) -> None:
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        log.warning("closing %s is taking too long; not waiting for it", name)

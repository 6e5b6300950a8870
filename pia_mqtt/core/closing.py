"""Closing many things within one deadline (shutdown must end within 2 s, DESIGN).

Each close runs in a daemon thread and gets an equal share of the time left, in order:
a hung peer cannot eat the time of the ones after it (MQTT, last, still says `offline`),
and a close that overruns is left to finish on its own while the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pia_mqtt.redact import describe

log = logging.getLogger(__name__)


def close_all(closers: Sequence[tuple[str, Callable[[], None]]], *, timeout: float) -> None:
    """Run every ``(name, close)`` in order; never wait more than ``timeout`` in total."""
    deadline = time.monotonic() + timeout
    for index, (name, close) in enumerate(closers):
        share = max(0.0, deadline - time.monotonic()) / (len(closers) - index)
        _close_within(name, close, share)


def _close_within(name: str, close: Callable[[], None], timeout: float) -> None:
    """Run one close in a daemon thread and wait at most ``timeout`` for it."""

    def run() -> None:
        try:
            close()
        except Exception as exc:
            # Shutting down: a failing close is worth a line, never a hang or a traceback.
            log.warning("closing %s failed: %s", name, describe(exc))

    thread = threading.Thread(target=run, name=f"close-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        log.warning("closing %s took more than %.1f s; not waiting for it", name, timeout)

"""Route, address and link changes straight from the kernel (rtnetlink), one call per burst.

A thread blocks on an ``AF_NETLINK``/``NETLINK_ROUTE`` socket subscribed to link, IPv4/IPv6
address and IPv4/IPv6 route changes, and sleeps until the kernel reports one: no polling.
A VPN reconnect emits dozens of messages within milliseconds, so a burst is folded into one
``notify()``: once the kernel has been quiet for ``quiet`` seconds, or ``max_delay`` after
the burst began when it keeps going (routes flapping for seconds still yield a call at
least that often, and a last one once they settle, so no move is missed). Messages are not
parsed: the caller compares its own cheap digest of the routing state to decide whether
anything it cares about changed. Where netlink is refused (seccomp, another OS),
:meth:`NetlinkWatch.start` returns False and the caller polls ``/proc`` instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# linux/rtnetlink.h multicast groups (the legacy bit masks bind() takes).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
NETLINK_ROUTE = getattr(socket, "NETLINK_ROUTE", 0)
QUIET = 0.05
MAX_DELAY = 0.5
_RECV = 65536
_RCVBUF = 1 << 20


class NetlinkWatch:
    """Calls ``notify`` (from its own thread) after each burst of routing changes."""

    def __init__(self, *, quiet: float = QUIET, max_delay: float = MAX_DELAY) -> None:
        self._quiet = quiet
        self._max_delay = max_delay
        self._sock: socket.socket | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def start(self, notify: Callable[[], None]) -> bool:
        """Subscribe and start the reader thread; False (logged) when netlink is refused."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        except (OSError, AttributeError) as exc:
            log.info("Route events (netlink) unavailable: %s", exc)
            return False
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, GROUPS))
        except OSError as exc:
            sock.close()
            log.info("Route events (netlink) refused: %s", exc)
            return False
        self._sock = sock
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(notify,), name="netlink", daemon=True
        )
        self._thread.start()
        return True

    def close(self) -> None:
        """Stop the reader thread and close the socket."""
        if self._wake is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        if self._wake is not None:
            for fd in self._wake:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._sock = self._wake = self._thread = None

    def _run(self, notify: Callable[[], None]) -> None:
        try:
            self._loop(notify)
        except OSError as exc:
            log.warning("Route events (netlink) stopped: %s; the keep-alive still checks", exc)

    def _loop(self, notify: Callable[[], None]) -> None:
        sock, wake = self._sock, self._wake
        assert sock is not None  # noqa: S101 - set by start()
        assert wake is not None  # noqa: S101 - set by start()
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ, "netlink")
            selector.register(wake[0], selectors.EVENT_READ, "stop")
            while True:
                if not self._wait(selector, None, sock):  # blocks until the kernel speaks
                    return
                began = last = time.monotonic()
                while True:
                    left = min(began + self._max_delay, last + self._quiet) - time.monotonic()
                    if left <= 0:
                        break
                    ready = selector.select(left)
                    if any(key.data == "stop" for key, _ in ready):
                        return
                    if ready:
                        _drain(sock)
                        last = time.monotonic()
                try:
                    notify()
                except Exception:
                    log.exception("Bug in the route event callback")
                    return

    @staticmethod
    def _wait(selector: selectors.BaseSelector, timeout: float | None, sock: socket.socket) -> bool:
        """Wait for kernel messages and read them all; False when asked to stop."""
        ready = selector.select(timeout)
        if any(key.data == "stop" for key, _ in ready):
            return False
        _drain(sock)
        return True


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            if not sock.recv(_RECV, socket.MSG_DONTWAIT):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # ENOBUFS: the kernel dropped messages (a huge burst); a change happened anyway.
            if exc.errno != errno.ENOBUFS:
                raise
            return

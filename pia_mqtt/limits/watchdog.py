"""The deadline watchdog behind :func:`pia_mqtt.limits.fetch`.

A request in flight is a :class:`Watch`: its deadline and the sockets its connections
used (handed over by the bounded connection classes through :func:`watch_socket`, on the
request's own thread). One thread, started on first use, sleeps until the nearest
deadline (without a timeout while nothing is in flight) and shuts the sockets of an
overdue request down, which ends a blocked ``recv`` at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time


class Watch:
    """One request's deadline: shuts its sockets down when the time is up."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._done = False
        self.expired = False
        self.deadline = time.monotonic() + seconds
        self.outer: Watch | None = None  # a request started inside another one

    def add(self, sock: socket.socket) -> None:
        """Cut ``sock`` too when the deadline passes (at once if it has passed).

        Kept as a duplicate descriptor of the same kernel socket: it stays valid after ssl
        wraps (and detaches) the original, and closing it never closes the connection, so
        the watchdog cannot hit a reused descriptor number.
        """
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return
        with self._lock:
            if self._done:
                dup.close()
                return
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def expire(self) -> None:
        """The deadline passed: cut every socket of the request (called by the watchdog)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)

    def finish(self) -> None:
        """The request is over: forget the deadline, close the duplicates."""
        _watchdog.remove(self)
        with self._lock:
            self._done = True
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


class Watchdog:
    """One thread for every request in flight, started on first use.

    It sleeps until the nearest deadline, and without a timeout while no request is in
    flight: nothing wakes periodically, and no thread is started per request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: list[Watch] = []
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        """Watch ``watch`` (starting the thread on first use)."""
        with self._cond:
            self._watches.append(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pia-mqtt-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def remove(self, watch: Watch) -> None:
        """Stop watching ``watch`` (it finished in time, or expired)."""
        with self._cond:
            if watch in self._watches:
                self._watches.remove(watch)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._due()
                while not due:
                    nearest = min((w.deadline for w in self._watches), default=None)
                    self._cond.wait(None if nearest is None else nearest - time.monotonic())
                    due = self._due()
            for watch in due:
                watch.expire()

    def _due(self) -> list[Watch]:
        now = time.monotonic()
        due = [w for w in self._watches if w.deadline <= now]
        for watch in due:
            self._watches.remove(watch)
        return due


_watchdog = Watchdog()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_local = threading.local()


def watch_socket(sock: socket.socket | None) -> None:
    """Hand ``sock`` to the request running on this thread, if it is watched."""
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


def begin(seconds: float) -> Watch:
    """Start watching the request about to run on this thread."""
    watch = Watch(seconds)
    watch.outer = getattr(_local, "watch", None)
    _local.watch = watch
    _watchdog.add(watch)
    return watch


def end(watch: Watch) -> None:
    """The request is over (either way): stop watching it and close its descriptors."""
    _local.watch = watch.outer
    watch.finish()

"""The lease manager's failure handling: show the error, back off, say when the port is lost.

:class:`Backoff` is one of :class:`~pia_mqtt.pia.manager.LeaseManager`'s collaborators: it
keeps the failure count, the end of the current backoff and the time of the last good bind;
the gateway to forget is in the shared :class:`~pia_mqtt.pia.state.LeaseState`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pia_mqtt.core.model import EventKind, Status
from pia_mqtt.pia.retry import PORT_LIFETIME, forget_gateway, retry_delay
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.core.engine import Engine
    from pia_mqtt.errors import PiaMqttError
    from pia_mqtt.pia.state import LeaseState


class Backoff:
    """What a failed step leaves behind, and what a successful bind clears."""

    def __init__(self, engine: Engine, state: LeaseState, *, retries: bool) -> None:
        self._engine = engine
        self._state = state
        self._retries = retries  # False for `once`: a failure ends the run, say so
        self._failures = 0
        self._lost_announced = False
        # Monotonic end of the current retry backoff (None while binds succeed), and of the
        # last successful bind (PIA drops a port 15 minutes of real time after it).
        self._retry_at: float | None = None
        self._bound_at: float | None = None

    def until(self) -> float | None:
        """Monotonic time the current retry backoff ends; None when not backing off."""
        if self._retry_at is None or self._retry_at <= self._engine.monotonic():
            return None
        return self._retry_at

    def bound(self) -> None:
        """A bind succeeded: no failures in a row, no backoff, the port's 15 minutes restart."""
        self._failures = 0
        self._retry_at = None
        self._bound_at = self._engine.monotonic()
        self._lost_announced = False

    def failed(self, exc: PiaMqttError, *, retry: Callable[[], None]) -> None:
        """Show ``exc``, maybe forget the gateway, and plan ``retry`` after the backoff.

        A refused signature is dropped by the caller first (it owns the lease).
        """
        self._failures += 1
        message = describe(exc)
        delay = retry_delay(exc, self._failures)
        # A gateway found before the failure stays shown (`once` printed gateway=None).
        found = self._state.gateway
        where = {"gateway": found.address, "hostname": found.hostname} if found else {}
        if forget_gateway(exc, self._failures):
            self._state.gateway = None
        self._engine.update(
            status=Status.ERROR,
            last_error=message,
            next_refresh=(
                self._engine.clock() + timedelta(seconds=delay) if self._retries else None
            ),
            **where,
        )
        if self._retries:
            self._engine.announce(
                EventKind.ERROR,
                f"{message}; retrying in {delay:.0f} s",
                level=logging.ERROR,
                retry_in=delay,
            )
        else:
            self._engine.announce(EventKind.ERROR, f"{message}; not retrying (once)",
                                  level=logging.ERROR)  # fmt: skip
        bound = self._bound_at
        lifetime = PORT_LIFETIME.total_seconds()
        if (
            bound is not None
            and self._engine.monotonic() - bound > lifetime
            and not self._lost_announced
        ):
            self._lost_announced = True
            self._engine.announce(
                EventKind.LOST,
                "No successful bind for 15 minutes: PIA has probably dropped the port",
            )
        self._engine.timers.cancel("keepalive")
        self._engine.timers.after("acquire", delay, retry)
        self._retry_at = self._engine.monotonic() + delay

"""The lease manager's failure handling: show the error, back off, say when the port is lost.

Mixed into :class:`~pia_mqtt.pia.manager.LeaseManager`, which owns the state declared here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import EventKind, GatewayTarget, Status
from pia_mqtt.errors import PiaMqttError, PiaRefusedError
from pia_mqtt.pia.retry import PORT_LIFETIME, forget_gateway, retry_delay
from pia_mqtt.redact import describe


class FailureHandling:
    """What a failed step leaves behind (the state is :class:`LeaseManager`'s)."""

    _engine: Engine
    _retries: bool
    _gateway: GatewayTarget | None
    _failures: int
    _retry_at: float | None
    _bound_at: float | None
    _lost_announced: bool

    if TYPE_CHECKING:

        @property
        def _now(self) -> datetime: ...
        def acquire(self) -> None:
            """The job in :class:`~pia_mqtt.pia.manager.LeaseManager`."""

        def _drop_lease(self) -> None: ...

    def _failed(self, exc: PiaMqttError) -> None:
        self._failures += 1
        message = describe(exc)
        delay = retry_delay(exc, self._failures)
        # A gateway found before the failure stays shown (`once` printed gateway=None).
        found = self._gateway
        where = {"gateway": found.address, "hostname": found.hostname} if found else {}
        if forget_gateway(exc, self._failures):
            self._gateway = None
        if isinstance(exc, PiaRefusedError):
            self._drop_lease()
        self._engine.update(
            status=Status.ERROR,
            last_error=message,
            next_refresh=self._now + timedelta(seconds=delay) if self._retries else None,
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
        self._engine.timers.after("acquire", delay, self.acquire)
        self._retry_at = self._engine.monotonic() + delay

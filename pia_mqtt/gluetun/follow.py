"""The controller for ``PORT_SOURCE=gluetun``: follow the port gluetun forwards itself.

gluetun owns the lease; we only read its control server on a short interval and hand the
port to the same files, qBittorrent, hook and MQTT paths. Port 0 or no port means "not
forwarded yet" and is never published.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from pia_mqtt.core.engine import Engine
from pia_mqtt.core.model import Command, EventKind, Status
from pia_mqtt.errors import GluetunError
from pia_mqtt.redact import describe

log = logging.getLogger(__name__)

POLL_INTERVAL = 10.0
# How often an unchanged port is re-confirmed in last_refresh (files, MQTT, healthcheck).
CONFIRM_EVERY = timedelta(seconds=60)


class PortReader(Protocol):
    """pia_mqtt.gluetun.client.GluetunPortReader."""

    def read(self) -> int | None:
        """The forwarded port, None while none is forwarded; raises GluetunError."""

    def close(self) -> None:
        """Release connections."""


class GluetunFollower:
    """Poll gluetun every ``interval`` seconds and publish what it forwards."""

    def __init__(self, engine: Engine, reader: PortReader, *, interval: float) -> None:
        self._engine = engine
        self._reader = reader
        self._interval = interval
        self._error: str | None = None

    def start(self) -> None:
        """Read at once, then every interval."""
        self._engine.update(status=Status.ACQUIRING)
        self._engine.timers.after("poll-now", 0, self.poll)
        self._engine.timers.every("poll", self._interval, self.poll)

    def handle(self, command: Command) -> None:
        """Refresh reads now; a new port can only be asked of gluetun itself."""
        if command is Command.REFRESH:
            self.poll()
        elif command is Command.NEW_PORT:
            log.warning(
                "new_port ignored: with PORT_SOURCE=gluetun, gluetun owns the port "
                "(restart gluetun's VPN to get another one)"
            )

    def close(self) -> None:
        """Close the gluetun client."""
        self._reader.close()

    def poll(self) -> None:
        """One read of gluetun's forwarded port."""
        now = self._engine.clock()
        try:
            port = self._reader.read()
        except GluetunError as exc:
            message = describe(exc)
            if message != self._error:
                self._engine.announce(EventKind.ERROR, message, level=logging.ERROR)
            self._error = message
            self._engine.update(status=Status.ERROR, last_error=message)
            return
        self._error = None
        if port is None:
            if self._engine.snapshot.status is not Status.ACQUIRING:
                log.info("gluetun has not forwarded a port yet; waiting")
            self._engine.update(status=Status.ACQUIRING, last_error=None)
            return
        snapshot = self._engine.snapshot
        previous = snapshot.port
        if (
            previous == port
            and snapshot.status is Status.ACTIVE
            and snapshot.last_refresh
            and now - snapshot.last_refresh < CONFIRM_EVERY
        ):
            # Nothing new: do not rewrite files and MQTT state on every poll.
            return
        self._engine.update(
            status=Status.ACTIVE,
            port=port,
            last_refresh=now,
            next_refresh=now + CONFIRM_EVERY,
            last_error=None,
        )
        if previous != port:
            self._engine.announce(
                EventKind.PORT_CHANGED,
                f"gluetun forwards port {port}" + (f" (was {previous})" if previous else ""),
                old_port=previous,
            )

"""The controller for ``PORT_SOURCE=gluetun``: follow the port gluetun forwards itself.

gluetun owns the lease; we read its control server on a short interval and hand the port
to the same files, qBittorrent, hook and MQTT paths. Port 0 or no port means "nothing
forwarded right now" and is never published.

gluetun recreates its port-forward service whenever it restarts its tunnel: the GET says
port 0 for a while, then the same port (its saved lease) or a new one (it may move to
another server). Meanwhile the last port stays in the files and on MQTT, ``status`` is
``acquiring`` and the ``gluetun`` entry ``reconnecting``. When a port is back it is applied
again even if the number did not change (:meth:`Engine.reapply`): qBittorrent loses its
listening socket when the tunnel interface goes down and up (qBittorrent issue #21288).
A control server that stopped answering and answers again counts the same way (gluetun
itself restarted). A restart shorter than one read interval is not seen.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from pia_mqtt.core.model import Command, EventKind, SinkHealth, Status, SyncState, valid_port
from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import GluetunAuthError, GluetunUnavailableError
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine
    from pia_mqtt.gluetun.client import ForwardedPorts

log = logging.getLogger(__name__)

SINK_NAME = "gluetun"
POLL_INTERVAL = 10.0
# How often an unchanged port is re-confirmed in last_refresh (files, MQTT, healthcheck).
CONFIRM_EVERY = timedelta(seconds=60)
REAPPLY_REASON = "gluetun tunnel restarted"


class PortReader(Protocol):
    """pia_mqtt.gluetun.client.GluetunPortReader."""

    def read(self) -> ForwardedPorts:
        """What gluetun forwards now; raises GluetunError."""

    def close(self) -> None:
        """Release connections."""


class GluetunFollower:
    """Poll gluetun every ``interval`` seconds and publish what it forwards."""

    def __init__(self, engine: Engine, reader: PortReader, *, interval: float) -> None:
        self._engine = engine
        self._reader = reader
        self._interval = interval
        self._error: str | None = None
        # When the port was last confirmed, on the job clock: a wall-clock step back must
        # not stop the confirmations (last_refresh would look fresh for an hour, then stale).
        self._confirmed_at: float | None = None
        # A port was published and then gluetun had none (or went away): the next port
        # gluetun forwards is applied again even when the number is the same.
        self._gap = False
        self._said_several = False
        self._said_waiting = False

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

    def backoff_until(self) -> float | None:
        """No backoff: a refresh is one local read of gluetun (rate-limited by the engine)."""
        return None

    def close(self) -> None:
        """Close the gluetun client."""
        self._reader.close()

    def poll(self) -> None:
        """One read of gluetun's forwarded port."""
        try:
            view = self._reader.read()
        except GluetunError as exc:
            self._failed(exc)
            return
        self._error = None
        if view.port is None:
            self._nothing_forwarded()
            return
        self._forwarded(view)

    def _failed(self, exc: GluetunError) -> None:
        message = describe(exc)
        if message != self._error:
            self._engine.announce(EventKind.ERROR, message, level=logging.ERROR)
        self._error = message
        if isinstance(exc, GluetunUnavailableError):
            state = SyncState.UNREACHABLE
            # gluetun itself went away: when it answers again its tunnel is a new one.
            self._gap = self._gap or valid_port(self._engine.snapshot.port)
        elif isinstance(exc, GluetunAuthError):
            state = SyncState.AUTH_FAILED
        else:
            state = SyncState.OUT_OF_SYNC
        self._update(status=Status.ERROR, last_error=message, health=state, error=message)

    def _nothing_forwarded(self) -> None:
        port = self._engine.snapshot.port
        if valid_port(port):
            if not self._gap:
                log.info(
                    "gluetun forwards no port right now (its tunnel is restarting); keeping "
                    "port %s until it is back",
                    port,
                )
            self._gap = True
        elif not self._said_waiting:
            log.info("gluetun has not forwarded a port yet; waiting")
            self._said_waiting = True
        self._update(status=Status.ACQUIRING, last_error=None, health=SyncState.RECONNECTING)

    def _forwarded(self, view: ForwardedPorts) -> None:
        port = view.port
        assert port is not None  # noqa: S101 - the caller checked
        if len(view.ports) > 1 and not self._said_several:
            self._said_several = True
            log.info(
                "gluetun forwards %s ports (%s): pia-mqtt uses the first, %s",
                len(view.ports),
                ", ".join(str(p) for p in view.ports),
                port,
            )
        engine = self._engine
        now = engine.clock()
        snapshot = engine.snapshot
        last_port = engine.last_port
        gap, self._gap = self._gap, False
        mono = engine.monotonic()
        if (
            not gap
            and snapshot.port == port
            and snapshot.status is Status.ACTIVE
            and self._confirmed_at is not None
            and mono - self._confirmed_at < CONFIRM_EVERY.total_seconds()
        ):
            # Nothing new: do not rewrite files and MQTT state on every poll.
            return
        self._confirmed_at = mono
        engine.update(
            status=Status.ACTIVE,
            port=port,
            last_refresh=now,
            next_refresh=now + CONFIRM_EVERY,
            last_error=None,
            sinks={**snapshot.sinks, SINK_NAME: SinkHealth(SyncState.IN_SYNC, port, now)},
        )
        if last_port != port:
            engine.announce(
                EventKind.PORT_CHANGED,
                f"gluetun forwards port {port}" + (f" (was {last_port})" if last_port else ""),
                old_port=last_port,
            )
        elif gap:
            engine.reapply(REAPPLY_REASON)
        elif snapshot.port is None:
            log.info("gluetun forwards port %s (the same as before this start)", port)

    def _update(
        self,
        *,
        status: Status,
        last_error: str | None,
        health: SyncState,
        error: str | None = None,
    ) -> None:
        """Change status and the gluetun entry together; the port (if any) stays."""
        snapshot = self._engine.snapshot
        old = snapshot.sinks.get(SINK_NAME)
        entry = SinkHealth(
            health,
            port=snapshot.port,
            last_sync=old.last_sync if old else None,
            error=error,
        )
        self._engine.update(
            status=status, last_error=last_error, sinks={**snapshot.sinks, SINK_NAME: entry}
        )

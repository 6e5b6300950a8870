"""Remember the last published port in ``STATE_FILE`` (``last_port``), for every port source.

With ``PORT_SOURCE=pia`` the lease manager already records it with each saved lease; with
``PORT_SOURCE=gluetun`` there is no lease, and this sink is what lets a restart tell "the
same port again" (no ``port_changed``, ``PIA_OLD_PORT`` = the port) from a real change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pia_mqtt.core.model import Event, Snapshot, valid_port
from pia_mqtt.errors import OutputError
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from pia_mqtt.pia.lease import LeaseStore

log = logging.getLogger(__name__)


class PortMemorySink:
    """Writes ``last_port`` when the published port changes (a Sink named ``memory``)."""

    name = "memory"

    def __init__(self, store: LeaseStore) -> None:
        self._store = store
        self._error: str | None = None

    @property
    def check_interval(self) -> float | None:
        """Nothing to check periodically."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Record a valid port (the store skips the write when it is already recorded)."""
        port = snapshot.port
        if not valid_port(port):
            return
        assert isinstance(port, int)  # noqa: S101 - narrowed by valid_port for mypy
        try:
            self._store.remember(port)
        except OutputError as exc:
            message = describe(exc)
            if message != self._error:
                log.error("%s (STATE_FILE): a restart may report the port as changed", message)
            self._error = message
            return
        self._error = None

    def event(self, event: Event) -> None:
        """Events need nothing here."""

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to release."""

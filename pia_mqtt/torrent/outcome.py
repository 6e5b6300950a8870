"""What the torrent sink reports after each attempt, and the wrong-credentials latch.

The sink's worker (``sink.py``) talks to the client; this module turns each attempt's
outcome into the sink's health in the engine's inbox, an event when the port changed or a
new kind of failure starts, and the latch: after refused credentials nothing is sent until
``auth_retry`` has passed, and after ``max_failed_logins`` refused logins never again.
Used from the sink's worker thread only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pia_mqtt.core.model import Event, EventKind, Inbox, SinkHealth, SyncState
from pia_mqtt.errors import TorrentBannedError, TorrentClientError
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from pia_mqtt.torrent.sink import TorrentClient

# The sink's logger: these lines are the sink's, as they were before this module split off.
log = logging.getLogger("pia_mqtt.torrent.sink")


@runtime_checkable
class ReportsConnectivity(Protocol):
    """A client that can tell whether peers reach it (qBittorrent's ``connection_status``)."""

    def connection_status(self) -> str | None:
        """The client's own word (``connected``, ``firewalled`` ...), None if unknown."""


class Outcomes:
    """One sink's health, failure memory and login latch (worker thread only)."""

    def __init__(
        self,
        client: TorrentClient,
        inbox: Inbox,
        *,
        clock: Callable[[], datetime],
        auth_retry: timedelta,
        max_failed_logins: int,
        confirmed: Callable[[], int | None],
    ) -> None:
        self._client = client
        self.name = client.name
        self._label = client.label
        self._synced_kind = EventKind(f"{client.name}_synced")
        self._failed_kind = EventKind(f"{client.name}_failed")
        self._inbox = inbox
        self._clock = clock
        self._auth_retry = auth_retry
        self._max_failed_logins = max_failed_logins
        self._confirmed = confirmed  # the port the client is known to have, read locked
        self._health: SinkHealth | None = None
        self._last_sync: datetime | None = None
        self._failure: tuple[SyncState, str] | None = None
        self._retry_at: datetime | None = None
        self._gave_up = False

    def latched(self) -> bool:
        """While latched nothing is sent; the auth_failed health is reported again."""
        if not self._gave_up and (self._retry_at is None or self._clock() >= self._retry_at):
            return False
        if self._health is not None:
            self._inbox.report(self.name, self._health)
        return True

    def _report(self, health: SinkHealth) -> None:
        self._health = health
        self._inbox.report(self.name, health)

    def succeeded(self, port: int, *, previous: int | None) -> None:
        """The client listens on ``port``: in sync (an event if it was ``previous``)."""
        recovered = self._failure is not None
        self._failure = None
        self._retry_at = None
        now = self._clock()
        self._last_sync = now
        self._report(
            SinkHealth(state=SyncState.IN_SYNC, port=port, last_sync=now, details=self._details())
        )
        if previous is not None:
            message = f"{self._label} listen port set to {port} (was {previous})"
            log.info("%s", message)
            self._inbox.emit(
                Event(
                    kind=self._synced_kind,
                    at=now,
                    message=message,
                    port=port,
                    data={"previous_port": previous},
                )
            )
        elif recovered:
            log.info("%s is in sync again: it listens on port %s", self._label, port)

    def _details(self) -> tuple[tuple[str, str], ...]:
        """Read the client's connection status (information only: nothing acts on it)."""
        if not isinstance(self._client, ReportsConnectivity):
            return ()
        try:
            status = self._client.connection_status()
        except TorrentClientError as exc:
            log.debug("%s: connection status not read: %s", self._label, describe(exc))
            return ()
        return (("connection_status", status),) if status is not None else ()

    def failed(self, state: SyncState, exc: TorrentClientError, wanted: int) -> None:
        """Setting or reading ``wanted`` failed for a reason that is worth retrying."""
        self._fail(state, describe(exc), type(exc).__name__, wanted)

    def _fail(
        self, state: SyncState, message: str, kind: str, wanted: int, *, level: int | None = None
    ) -> None:
        confirmed = self._confirmed()
        self._report(
            SinkHealth(state=state, port=confirmed, last_sync=self._last_sync, error=message)
        )
        key = (state, kind)
        if key == self._failure:
            log.debug("%s still failing: %s", self._label, message)
            return
        self._failure = key
        log.log(level if level is not None else logging.WARNING, "%s", message)
        self._inbox.emit(
            Event(
                kind=self._failed_kind,
                at=self._clock(),
                message=message,
                port=wanted,
                data={"state": state.value},
            )
        )

    def auth_failed(self, exc: TorrentClientError, wanted: int) -> None:
        """Credentials refused or the IP banned: latch (retry later, or give up)."""
        message = describe(exc)
        if isinstance(exc, TorrentBannedError):
            kind = "banned"  # a banned login is not counted by the client: retry later
            self._retry_at = self._clock() + self._auth_retry
        elif self._client.failed_logins >= self._max_failed_logins:
            kind = "gave_up"
            self._gave_up = True
            message += (
                f"; gave up after {self._client.failed_logins} refused logins so that "
                f"{self._label} does not lock this IP out: fix {self._client.credentials} "
                "and restart pia-mqtt"
            )
        else:
            kind = "auth"
            self._retry_at = self._clock() + self._auth_retry
            message += f"; next login attempt in {self._auth_retry.total_seconds():g} s"
        # ERROR once when auth starts failing; later changes (ban, giving up) as warnings.
        level = logging.ERROR
        if self._failure is not None and self._failure[0] is SyncState.AUTH_FAILED:
            level = logging.WARNING
        self._fail(SyncState.AUTH_FAILED, message, kind, wanted, level=level)

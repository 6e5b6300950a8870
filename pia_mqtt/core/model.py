"""The values that flow between the engine and its sinks, and the sink interface.

Pure data: frozen dataclasses and enums, no I/O. The engine is the only writer of a
:class:`Snapshot`; sinks (files, qBittorrent, MQTT, hook, gluetun) receive snapshots and
events and report their own health back through an :class:`Inbox`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

MIN_PORT = 1
MAX_PORT = 65535


def valid_port(port: object) -> bool:
    """True for an int in 1-65535 (and not a bool): the only ports ever written or sent."""
    return isinstance(port, int) and not isinstance(port, bool) and MIN_PORT <= port <= MAX_PORT


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with an explicit offset (Home Assistant needs the offset)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def iso_z(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix, as in the seed's data file."""
    text = iso(moment)
    return text.replace("+00:00", "Z") if text else None


class Status(StrEnum):
    """Health of the port forward itself (not of the sinks)."""

    STARTING = "starting"
    ACQUIRING = "acquiring"
    ACTIVE = "active"
    ERROR = "error"


class SyncState(StrEnum):
    """Health of a sink that mirrors the port somewhere (qBittorrent, gluetun)."""

    IN_SYNC = "in_sync"
    OUT_OF_SYNC = "out_of_sync"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"
    # gluetun only: it refuses PUT /v1/portforward for good (the error names the fix).
    REFUSED = "refused"
    # gluetun only (PORT_SOURCE=gluetun): its tunnel restarts, no port for now; the last
    # port is kept.
    RECONNECTING = "reconnecting"


class Command(StrEnum):
    """What a user (MQTT button, signal) can ask the engine to do."""

    REFRESH = "refresh"
    NEW_PORT = "new_port"
    STOP = "stop"


@dataclass(frozen=True)
class GatewayTarget:
    """A PIA gateway to talk to: its address and the certificate name to verify."""

    address: str
    hostname: str
    source: str = "configured"


@dataclass(frozen=True)
class SinkHealth:
    """A sink's own report: its state, when it last succeeded, and the last error."""

    state: SyncState
    port: int | None = None
    last_sync: datetime | None = None
    error: str | None = None
    details: tuple[tuple[str, str], ...] = ()
    """Extra facts the sink reports in its own words (qBittorrent: ``connection_status``)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the data file and the MQTT state document."""
        return {
            "state": self.state.value,
            "port": self.port,
            "last_sync": iso(self.last_sync),
            "error": self.error,
            **dict(self.details),
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything the outside world is told, as one immutable value."""

    status: Status
    updated_at: datetime
    port: int | None = None
    gateway: str | None = None
    hostname: str | None = None
    expires_at: datetime | None = None
    last_refresh: datetime | None = None
    next_refresh: datetime | None = None
    last_error: str | None = None
    source: str = "pia"
    sinks: dict[str, SinkHealth] = field(default_factory=dict)
    previous_port: int | None = None
    """The port published before ``port`` (remembered across restarts): PIA_OLD_PORT."""
    tunnel_epoch: int = 0
    """Bumped when the tunnel changed but the port did not: sinks re-apply the same port."""

    def to_json(self) -> dict[str, Any]:
        """The ``state`` document (MQTT) and the core of the data file."""
        return {
            "port": self.port,
            "status": self.status.value,
            "source": self.source,
            "gateway": self.gateway,
            "hostname": self.hostname,
            "expires_at": iso(self.expires_at),
            "last_refresh": iso(self.last_refresh),
            "next_refresh": iso(self.next_refresh),
            "last_error": self.last_error,
            "qbittorrent": _health(self.sinks.get("qbittorrent")),
            "transmission": _health(self.sinks.get("transmission")),
            "deluge": _health(self.sinks.get("deluge")),
            "gluetun": _health(self.sinks.get("gluetun")),
            "updated_at": iso(self.updated_at),
        }


def _health(health: SinkHealth | None) -> dict[str, Any] | None:
    return health.to_json() if health is not None else None


class EventKind(StrEnum):
    """Kinds of the non-retained events published on ``<topic>/events``."""

    PORT_CHANGED = "port_changed"
    PORT_REAPPLIED = "port_reapplied"
    BOUND = "bound"
    BIND_FAILED = "bind_failed"
    RENEWED = "renewed"
    LOST = "lost"
    GATEWAY_CHANGED = "gateway_changed"
    ERROR = "error"
    QBITTORRENT_SYNCED = "qbittorrent_synced"
    QBITTORRENT_FAILED = "qbittorrent_failed"
    TRANSMISSION_SYNCED = "transmission_synced"
    TRANSMISSION_FAILED = "transmission_failed"
    DELUGE_SYNCED = "deluge_synced"
    DELUGE_FAILED = "deluge_failed"
    GLUETUN_PUSHED = "gluetun_pushed"
    GLUETUN_FAILED = "gluetun_failed"
    HOOK_RAN = "hook_ran"
    HOOK_FAILED = "hook_failed"
    COMMAND = "command"


@dataclass(frozen=True)
class Event:
    """Something that happened; ``message`` is already redacted and human-readable."""

    kind: EventKind
    at: datetime
    message: str
    port: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the ``events`` topic."""
        return {
            "event": self.kind.value,
            "at": iso(self.at),
            "port": self.port,
            "message": self.message,
            **self.data,
        }


class Inbox(Protocol):
    """The engine's thread-safe mailbox: how sinks and MQTT talk back to the engine."""

    def command(self, command: Command, *, source: str) -> None:
        """Ask the engine to do something (refresh, new port, stop)."""

    def report(self, sink: str, health: SinkHealth) -> None:
        """A sink's own health changed; it lands in the snapshot's ``sinks``."""

    def emit(self, event: Event) -> None:
        """Publish an event (hook results...) through the engine to every sink."""


class Sink(Protocol):
    """Receives the port. Methods must return quickly: network sinks use their own thread."""

    name: str

    def publish(self, snapshot: Snapshot) -> None:
        """The snapshot changed (called on the engine thread after every change)."""

    def event(self, event: Event) -> None:
        """An event happened."""

    def check(self, snapshot: Snapshot) -> None:
        """Periodic check (drift repair); called every ``check_interval`` seconds if set."""

    def close(self) -> None:
        """Flush and stop; called once on shutdown, after the last publish."""

    @property
    def check_interval(self) -> float | None:
        """Seconds between :meth:`check` calls, or None for no periodic check."""

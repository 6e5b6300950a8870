r"""The two files other containers read: ``PORT_FILE`` and ``PORT_DATA_FILE``.

``PORT_FILE`` holds the port alone (``54321\\n``). ``PORT_DATA_FILE`` holds the seed's
``port``, ``timestamp`` (last successful bind) and ``next_refresh``, plus ``expires_at``,
``gateway``, ``hostname``, ``status`` and the sinks' health. Both are replaced atomically
and only ever hold a valid port: nothing is written until the first port is known.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pia_mqtt.atomic import atomic_write, ensure_folder
from pia_mqtt.core.model import Event, Snapshot, iso_z, valid_port
from pia_mqtt.errors import OutputError
from pia_mqtt.redact import describe

log = logging.getLogger(__name__)

# The data file's times are whole seconds, truncated; beyond this a bind "in the future"
# is a clock problem, not a fresh bind.
FUTURE_TOLERANCE = timedelta(seconds=5)


def data_document(snapshot: Snapshot, refresh_interval: float) -> dict[str, Any]:
    """The data file's JSON for a snapshot (pure)."""
    state = snapshot.to_json()
    return {
        "port": snapshot.port,
        "timestamp": iso_z(snapshot.last_refresh),
        "next_refresh": iso_z(snapshot.next_refresh),
        "expires_at": iso_z(snapshot.expires_at),
        "gateway": snapshot.gateway,
        "hostname": snapshot.hostname,
        "status": snapshot.status.value,
        "source": snapshot.source,
        "refresh_interval": refresh_interval,
        "last_error": snapshot.last_error,
        "qbittorrent": _sink_health(state["qbittorrent"]),
        "transmission": _sink_health(state["transmission"]),
        "deluge": _sink_health(state["deluge"]),
        "gluetun": _sink_health(state["gluetun"]),
        "updated_at": iso_z(snapshot.updated_at),
    }


def _sink_health(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """A sink's health for the data file, its port kept only when valid.

    qBittorrent may report 0 ("random port") or 70000; the file never holds such a port.
    """
    if health is None or valid_port(health.get("port")):
        return health
    return {**health, "port": None}


class PortFilesSink:
    """Writes both files on every snapshot that carries a valid port (engine thread)."""

    name = "files"

    def __init__(self, port_file: Path, data_file: Path, *, refresh_interval: float) -> None:
        self._port_file = port_file
        self._data_file = data_file
        self._interval = refresh_interval
        self._written_port: int | None = None
        self._written: dict[str, Any] | None = None  # the data document, updated_at aside
        self._last_error: str | None = None

    @property
    def check_interval(self) -> float | None:
        """No periodic check: every keep-alive changes the snapshot and rewrites the files."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Write the files; failures are logged once and retried on the next snapshot."""
        if not valid_port(snapshot.port):
            return
        try:
            self._write(snapshot)
        except OutputError as exc:
            message = describe(exc)
            if message != self._last_error:
                log.error("%s (PORT_FILE/PORT_DATA_FILE); the keep-alive goes on", message)
            self._last_error = message
            return
        if self._last_error is not None:
            log.info("Port files written again to %s", self._port_file.parent)
            self._last_error = None

    def event(self, event: Event) -> None:
        """Files do not record events."""

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to release: every write is already complete."""

    def _write(self, snapshot: Snapshot) -> None:
        for path in (self._port_file, self._data_file):
            ensure_folder(path.parent)
        if snapshot.port != self._written_port or not self._port_file.exists():
            atomic_write(self._port_file, f"{snapshot.port}\n")
            self._written_port = snapshot.port
        document = data_document(snapshot, self._interval)
        content = {k: v for k, v in document.items() if k != "updated_at"}
        if content == self._written and self._data_file.exists():
            # Only something the file does not show changed (MQTT's health flapping with a
            # broker that drops us every second): no write, on what may be an SD card.
            return
        atomic_write(self._data_file, json.dumps(document, indent=2) + "\n")
        self._written = content


@dataclass(frozen=True)
class Health:
    """The healthcheck's verdict."""

    ok: bool
    reason: str


def check_health(data_file: Path, *, refresh_interval: float, now: datetime) -> Health:
    """Healthy only if the data file shows a successful bind within two intervals.

    A bind "in the future" is unhealthy: the clock stepped back, so its age is unknown.
    """
    try:
        document = json.loads(data_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Health(ok=False, reason=f"no data file yet at {data_file} (PORT_DATA_FILE)")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return Health(ok=False, reason=f"cannot read {data_file}: {exc}")
    if not isinstance(document, dict) or not valid_port(document.get("port")):
        return Health(ok=False, reason=f"{data_file} holds no valid port")
    try:
        bound_at = datetime.fromisoformat(str(document.get("timestamp")))
    except ValueError:
        return Health(ok=False, reason=f"{data_file} has no time of the last bind")
    if bound_at.tzinfo is None:
        bound_at = bound_at.replace(tzinfo=UTC)
    interval = _positive(document.get("refresh_interval")) or refresh_interval
    age = now - bound_at
    if age < -FUTURE_TOLERANCE:
        # Not fresh: the clock went back (NTP, a VM resumed) or the writer's clock is ahead;
        # how long ago the last bind really was is unknown.
        return Health(
            ok=False,
            reason=f"last successful bind is {-age.total_seconds():.0f} s in the future "
            f"({iso_z(bound_at)}, now {iso_z(now)}): this host's clock was set back or is "
            "wrong (check NTP); the next keep-alive writes a current time",
        )
    if age > timedelta(seconds=2 * interval):
        return Health(
            ok=False,
            reason=f"last successful bind {age.total_seconds():.0f} s ago "
            f"(more than two intervals of {interval:.0f} s)",
        )
    status = document.get("status")
    return Health(
        ok=True,
        reason=f"port {document['port']} bound {age.total_seconds():.0f} s ago (status {status})",
    )


def _positive(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None

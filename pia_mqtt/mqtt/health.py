"""MQTT's own health, as the engine shows it in the state (``mqtt`` entry), and redaction.

One WARNING per distinct problem (the reconnect attempts that follow are DEBUG), one report
to the engine per change of state or message, so a flapping broker costs a log line, not a
file write per reconnect.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pia_mqtt import redact
from pia_mqtt.core.model import Inbox, SinkHealth, SyncState
from pia_mqtt.mqtt.client import MAX_RECONNECT_DELAY

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("pia_mqtt.mqtt.sink")  # one logger for the sink's lines, as before


def utcnow() -> datetime:
    """The wall clock in UTC (the default for health timestamps)."""
    return datetime.now(UTC)


def redacted_json(value: Any) -> Any:
    """``value`` (a JSON document) with every string passed through :func:`redact.redact`.

    Redacting every string inside the document rather than the JSON text means escaping
    cannot hide a secret from redact() and the result stays valid JSON.
    """
    if isinstance(value, str):
        return redact.redact(value)
    if isinstance(value, dict):
        return {k: redacted_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted_json(v) for v in value]
    return value


class MqttHealth:
    """Reports the broker connection's health to the engine, once per change."""

    name = "mqtt"

    def __init__(self, inbox: Inbox, where: str, *, clock: Callable[[], datetime]) -> None:
        self._inbox = inbox
        self._where = where
        self._clock = clock
        self._last: tuple[SyncState, str | None] | None = None
        self._problem: str | None = None

    def connected(self) -> None:
        """The broker accepted us and the announcement went out."""
        self._problem = None
        self._set(SyncState.IN_SYNC, None)

    def problem(self, problem: str, state: SyncState = SyncState.UNREACHABLE) -> None:
        """A connection problem; paho retries with backoff."""
        if problem != self._problem:
            log.warning(
                "%s: %s; retrying with backoff (at most %d s)",
                self._where,
                problem,
                MAX_RECONNECT_DELAY,
            )
            self._problem = problem
        else:
            log.debug("%s: %s", self._where, problem)
        self._set(state, f"{self._where}: {problem}")

    def _set(self, state: SyncState, error: str | None) -> None:
        if self._last == (state, error):
            return
        self._last = (state, error)
        last_sync = self._clock() if state is SyncState.IN_SYNC else None
        self._inbox.report(self.name, SinkHealth(state, last_sync=last_sync, error=error))

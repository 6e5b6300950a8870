"""MQTT's own health, as the engine shows it in the state (``mqtt`` entry), and redaction.

A broker that drops us every second must cost neither a log line nor a file write per
reconnect: a WARNING per distinct problem at most once a minute (the repeats in between are
DEBUG and counted in the next WARNING), "connected" at INFO only for the first connection
and after a problem that was logged, and one report to the engine per change of state or
message. The port files do not show MQTT's health at all, so these reports never rewrite
them (:class:`~pia_mqtt.sinks.portfiles.PortFilesSink` skips unchanged documents).

Publishes the broker refuses (MQTT 5 PUBACK reason codes, an ACL) make the health
``out_of_sync`` naming the topic, until a publish to that topic is accepted again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pia_mqtt import redact
from pia_mqtt.core.model import Inbox, SinkHealth, SyncState
from pia_mqtt.mqtt.client import MAX_RECONNECT_DELAY

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("pia_mqtt.mqtt.sink")  # one logger for the sink's lines, as before

WARN_EVERY = 60.0  # seconds between two WARNINGs about the same problem
_AUTH_REASONS = {134, 135}  # Bad user name or password, Not authorized (3.1.1 codes 4, 5)


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

    def __init__(
        self,
        inbox: Inbox,
        where: str,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inbox = inbox
        self._where = where
        self._clock = clock
        self._monotonic = monotonic
        self._last: tuple[SyncState, str | None] | None = None
        self._problem: tuple[SyncState, str] | None = None  # the connection's, if any
        self._refused: dict[str, str] = {}  # topic -> the broker's reason
        self._warned: dict[str, float] = {}  # problem -> when it was last a WARNING
        self._repeats: dict[str, int] = {}  # problem -> DEBUG repeats since that WARNING
        self._ever_connected = False
        self._problem_logged = False

    def connecting_done(self, *, v5: bool) -> None:
        """The broker accepted the connection (CONNACK); logged, reported on announce."""
        level = logging.INFO if self._problem_logged or not self._ever_connected else logging.DEBUG
        log.log(level, "connected to %s (MQTT %s)", self._where, "5" if v5 else "3.1.1")
        self._ever_connected = True
        self._problem_logged = False

    def connected(self) -> None:
        """The broker accepted us and the announcement went out."""
        self._problem = None
        self._report()

    def problem(self, problem: str, state: SyncState = SyncState.UNREACHABLE) -> None:
        """A connection problem; paho retries with backoff."""
        now = self._monotonic()
        warned = self._warned.get(problem)
        if warned is None or now - warned >= WARN_EVERY:
            repeats = self._repeats.pop(problem, 0)
            again = ""
            if repeats and warned is not None:
                again = f" ({repeats} more times in the last {now - warned:.0f} s)"
            log.warning(
                "%s: %s%s; retrying with backoff (at most %d s)",
                self._where,
                problem,
                again,
                MAX_RECONNECT_DELAY,
            )
            self._warned[problem] = now
            self._problem_logged = True
        else:
            self._repeats[problem] = self._repeats.get(problem, 0) + 1
            log.debug("%s: %s", self._where, problem)
        self._problem = (state, problem)
        self._report()

    def refused_connection(self, code: int, reason: str) -> None:
        """The broker answered CONNACK with a failure reason code."""
        if code in _AUTH_REASONS:
            credentials = f"the broker refused MQTT_USER/MQTT_PASS ({reason})"
            self.problem(credentials, SyncState.AUTH_FAILED)
        else:
            self.problem(f"the broker refused the connection ({reason})")

    def refused(self, topic: str, reason: str) -> None:
        """The broker refused a publish to ``topic`` (MQTT 5 PUBACK reason code)."""
        if self._refused.get(topic) != reason:
            log.warning(
                "%s refused the publish to %s (%s): allow this client to publish under "
                "MQTT_TOPIC in the broker's ACL",
                self._where,
                topic,
                reason,
            )
        self._refused[topic] = reason
        self._report()

    def accepted(self, topic: str) -> None:
        """The broker accepted a publish to ``topic``."""
        if self._refused.pop(topic, None) is not None:
            log.info("%s accepts publishes to %s again", self._where, topic)
            self._report()

    def _report(self) -> None:
        if self._problem is not None:
            state, problem = self._problem
            self._set(state, f"{self._where}: {problem}")
        elif self._refused:
            refused = ", ".join(f"{t} ({r})" for t, r in sorted(self._refused.items()))
            self._set(
                SyncState.OUT_OF_SYNC,
                f"{self._where}: refused publishing to {refused}; check its ACL for MQTT_TOPIC",
            )
        else:
            self._set(SyncState.IN_SYNC, None)

    def _set(self, state: SyncState, error: str | None) -> None:
        if self._last == (state, error):
            return
        self._last = (state, error)
        last_sync = self._clock() if state is SyncState.IN_SYNC else None
        self._inbox.report(self.name, SinkHealth(state, last_sync=last_sync, error=error))

"""The retained ``port``, ``status`` and ``state`` topics: once per change, and a heartbeat.

One message per change: the three go out together when the state document changes
(``updated_at`` aside, so a sink's health that the document does not show, such as MQTT's
own, is no change), never twice for one snapshot. Home Assistant's ``expire_after`` (two
keep-alive intervals + 60 s) needs a message now and then even when nothing changes: the
heartbeat re-sends all three only after 1.25 intervals without a publish, so while
keep-alives succeed (each one changes the document) it stays silent and a keep-alive is
never preceded by a stale copy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pia_mqtt.core.model import valid_port
from pia_mqtt.mqtt.health import redacted_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.core.model import Snapshot
    from pia_mqtt.mqtt.discovery import Topics

HEARTBEAT_AFTER = 1.25  # keep-alive intervals without a publish before the heartbeat sends


class StateTopics:
    """Decides what of a snapshot to send; ``send(topic, payload)`` publishes retained."""

    def __init__(
        self,
        topics: Topics,
        *,
        interval: float,
        monotonic: Callable[[], float],
        send: Callable[[str, str], None],
    ) -> None:
        self._topics = topics
        self._interval = interval
        self._monotonic = monotonic
        self._send = send
        self._sent: dict[str, object] | None = None  # the last document sent, updated_at aside
        self._sent_at: float | None = None

    def publish(self, snapshot: Snapshot, *, force: bool = False) -> None:
        """Send the snapshot if a subscriber would see a change (always with ``force``)."""
        document = redacted_json(snapshot.to_json())
        visible = {k: v for k, v in document.items() if k != "updated_at"}
        if not force and visible == self._sent:
            return
        self._sent, self._sent_at = visible, self._monotonic()
        # A missing or invalid port leaves the last retained port in place: the topic always
        # holds the last port that was forwarded; `status` and `state` tell whether it is live.
        if valid_port(snapshot.port):
            self._send(self._topics.port, str(snapshot.port))
        self._send(self._topics.status, snapshot.status.value)
        self._send(self._topics.state, json.dumps(document))

    def heartbeat_due(self) -> bool:
        """Whether nothing was sent for 1.25 keep-alive intervals."""
        return self._sent_at is None or (
            self._monotonic() - self._sent_at >= HEARTBEAT_AFTER * self._interval
        )

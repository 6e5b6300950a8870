"""Which topic each PUBACK answers, so that MQTT 5's reason codes reach MQTT's health.

A publish the broker refuses (its ACL does not let this client write there) comes back as
a PUBACK with a failure reason code; :class:`Acks` turns it into
:meth:`~pia_mqtt.mqtt.health.MqttHealth.refused` for that topic, and a later accepted
publish to it into :meth:`~pia_mqtt.mqtt.health.MqttHealth.accepted`. With MQTT 3.1.1 every
PUBACK is a success (the broker drops refused messages silently).

Locking: paho calls ``on_publish`` holding its own message mutex, which ``publish()``
takes too while the sink holds its lock; this table therefore has a lock of its own, never
held while calling into paho. A PUBACK may beat :meth:`Acks.sent` (paho's thread is fast):
it is kept until the topic of its message id is known.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from pia_mqtt.mqtt.health import MqttHealth


class Acks:
    """Message id -> topic until its PUBACK; verdicts go to MQTT's health."""

    def __init__(self, health: MqttHealth) -> None:
        self._health = health
        self._lock = threading.Lock()
        self._topic_of: dict[int, str] = {}
        self._early: dict[int, ReasonCode] = {}

    def sent(self, mid: int, topic: str) -> None:
        """A QoS 1 message to ``topic`` went to paho with message id ``mid``."""
        with self._lock:
            early = self._early.pop(mid, None)
            if early is None:
                self._topic_of[mid] = topic
        if early is not None:
            self._verdict(topic, early)

    def on_publish(
        self, _c: object, _u: object, mid: int, reason: ReasonCode, _p: Properties
    ) -> None:
        """The client's ``on_publish`` callback (paho's network thread)."""
        with self._lock:
            topic = self._topic_of.pop(mid, None)
            if topic is None:
                self._early[mid] = reason
                return
        self._verdict(topic, reason)

    def _verdict(self, topic: str, reason: ReasonCode) -> None:
        if reason.is_failure:
            self._health.refused(topic, str(reason))
        else:
            self._health.accepted(topic)

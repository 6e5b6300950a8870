"""The MQTT sink's paho callbacks: connection lifecycle and inbound messages.

They run on paho's network thread and never block there: a connect subscribes, the SUBACK
announces (see :mod:`pia_mqtt.mqtt.sink` for why it waits for it), button presses only
enqueue a command to the engine, and HA's birth message arms a ``threading.Timer`` that
re-sends discovery. :class:`~pia_mqtt.mqtt.sink.MqttSink` owns the state they use.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import paho.mqtt.client as paho

from pia_mqtt import redact
from pia_mqtt.core.model import Command
from pia_mqtt.mqtt.client import (
    UNSUPPORTED_PROTOCOL,
    Inbound,
    classify_press,
    downgrade,
    subscribe,
    uses_v5,
)
from pia_mqtt.mqtt.discovery import ONLINE, QOS

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

    from pia_mqtt.core.model import Inbox
    from pia_mqtt.mqtt.discovery import Topics
    from pia_mqtt.mqtt.health import MqttHealth
    from pia_mqtt.settings import Settings

log = logging.getLogger("pia_mqtt.mqtt.sink")  # one logger for the sink's lines, as before


class PahoCallbacks:
    """The callbacks :class:`~pia_mqtt.mqtt.sink.MqttSink` gives its paho client."""

    # Set by MqttSink.__init__; the lock guards _online, _closing and _timer.
    _settings: Settings
    _inbox: Inbox
    _topics: Topics
    _birth_topic: str
    _birth_delay: float
    _health: MqttHealth
    _lock: threading.Lock
    _online: bool
    _closing: bool
    _announced: threading.Event
    _timer: threading.Timer | None
    _subscribe_mid: int | None

    if TYPE_CHECKING:  # MqttSink's publishing side

        def _send(self, topic: str, payload: str, *, retain: bool) -> None: ...

        def _announce(self, *, after_birth: bool = False) -> None: ...

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL and uses_v5(client):
                log.info("the MQTT broker does not speak MQTT 5: using MQTT 3.1.1")
                downgrade(client)  # paho reconnects after its backoff
                return
            self._health.refused_connection(reason.value, str(reason))
            return
        self._health.connecting_done(v5=uses_v5(client))
        wanted = [self._topics.refresh, self._topics.new_port]
        if self._settings.ha_discovery:
            wanted.append(self._birth_topic)
        self._subscribe_mid = subscribe(client, wanted, qos=QOS)

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if any(r.is_failure for r in reasons):
            log.warning("the MQTT broker refused a subscription (check its ACL): %s", reasons)
        self._announce()

    def _on_connect_fail(self, _c: object, _u: object) -> None:
        self._health.problem(
            "cannot connect (is the broker running, are MQTT_HOST/MQTT_PORT/MQTT_TLS right?)"
        )

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        with self._lock:
            was_online, self._online = self._online, False
            closing = self._closing
        self._announced.clear()
        if not closing and was_online:
            self._health.problem(f"lost the connection ({reason})")

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            if msg.topic == self._topics.refresh:
                self._command(msg, Command.REFRESH)
            elif msg.topic == self._topics.new_port:
                self._command(msg, Command.NEW_PORT)
            elif msg.topic == self._birth_topic and msg.payload.strip() == ONLINE.encode():
                self._schedule_resend()
        except Exception as exc:  # paho's thread must survive anything a message does
            log.warning("handling MQTT message on %s failed: %s", msg.topic, redact.describe(exc))

    def _command(self, msg: paho.MQTTMessage, command: Command) -> None:
        verdict = classify_press(msg)
        if verdict is Inbound.RETAINED:
            with self._lock:
                self._send(msg.topic, "", retain=True)
        elif verdict is Inbound.PRESS:
            # DEBUG: a flood of presses is reported once, by the engine (core.commands).
            log.debug("%s requested over MQTT", command.value)
            self._inbox.command(command, source="mqtt")

    def _schedule_resend(self) -> None:
        with self._lock:
            if self._closing:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(
                self._birth_delay, self._announce, kwargs={"after_birth": True}
            )
            self._timer.daemon = True
            self._timer.start()

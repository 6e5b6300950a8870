"""The MQTT sink: one paho-mqtt client with an explicit lifecycle.

will ``offline`` (retained) → connect (in the background, retried with backoff capped at
60 s) → subscribe to the command topics and HA's birth topic → once the broker confirms the
subscription: ``online`` + discovery + the CURRENT snapshot (on every connect) → ... →
explicit ``offline`` → disconnect.

Why the announcement waits for the SUBACK: on a reconnect paho re-sends the QoS 1 messages
that were in flight when the connection dropped, and it does so *after* ``on_connect``
returns. Publishing the current state from ``on_connect`` would let those stale messages
overwrite it; the SUBACK is handled after that re-send, so what we publish then is last.

Threads: paho's network thread runs the callbacks and only enqueues commands to the engine
(:class:`~pia_mqtt.core.model.Inbox`). ``publish``, ``event`` and ``check`` (engine thread) never
block; only ``close``, ``flush`` and ``wait_connected`` wait, always bounded. A
``threading.Timer`` re-sends discovery ~2 s after Home Assistant's birth message, so paho's
thread never waits.

The paho callbacks (connect, SUBACK, disconnect, messages): :mod:`~pia_mqtt.mqtt.callbacks`;
the client, MQTT 5 and button presses: :mod:`~pia_mqtt.mqtt.client`; port/status/state
once per change and the heartbeat: :mod:`~pia_mqtt.mqtt.state`; refused publishes (PUBACK
reason codes): :mod:`~pia_mqtt.mqtt.acks`; health and its log lines:
:mod:`~pia_mqtt.mqtt.health`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from pia_mqtt import redact
from pia_mqtt.core.model import Event, Inbox, Snapshot
from pia_mqtt.errors import MqttError
from pia_mqtt.mqtt import discovery
from pia_mqtt.mqtt.acks import Acks
from pia_mqtt.mqtt.callbacks import PahoCallbacks
from pia_mqtt.mqtt.client import KEEPALIVE, build_client
from pia_mqtt.mqtt.discovery import OFFLINE, ONLINE, QOS, Topics
from pia_mqtt.mqtt.health import MqttHealth, redacted_json, utcnow
from pia_mqtt.mqtt.state import StateTopics

if TYPE_CHECKING:
    from collections.abc import Callable

    from pia_mqtt.settings import Settings

log = logging.getLogger(__name__)

BIRTH_DELAY = 2.0  # HA needs a moment after its birth message before discovery is handled
CLOSE_TIMEOUT = 2.0


class MqttSink(PahoCallbacks):
    """Publishes snapshots and events, and turns button presses into engine commands."""

    name = "mqtt"

    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        *,
        qbittorrent_enabled: bool,
        version: str,
        transmission_enabled: bool = False,
        deluge_enabled: bool = False,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        birth_delay: float = BIRTH_DELAY,
        forget_on_close: bool = False,
    ) -> None:
        if settings.mqtt_host is None:
            raise MqttError("MQTT is off: set MQTT_HOST to the broker's address")
        topic, prefix = settings.mqtt_topic, settings.ha_discovery_prefix
        for var, value in (("MQTT_TOPIC", topic), ("HA_DISCOVERY_PREFIX", prefix)):
            if not value or any(c in value for c in "+#\0"):
                raise MqttError(f"{var}: must be a plain topic without + or # (got {value!r})")
        self._settings = settings
        self._inbox = inbox
        self._forget_on_close = forget_on_close
        self._birth_delay = birth_delay
        self._topics = Topics(topic)
        self._birth_topic = f"{prefix}/status"
        self._interval = settings.port_forward_refresh_interval
        self._discovery = discovery.discovery_message(
            topic,
            prefix=prefix,
            enabled=settings.ha_discovery,
            version=version,
            qbittorrent=qbittorrent_enabled,
            refresh_interval=self._interval,
            transmission=transmission_enabled,
            deluge=deluge_enabled,
        )
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._online = False  # announced on the current connection
        self._announced = threading.Event()
        self._closing = False
        self._started = False
        self._pending: list[paho.MQTTMessageInfo] = []
        self._timer: threading.Timer | None = None
        self._subscribe_mid: int | None = None
        self._state = StateTopics(
            self._topics,
            interval=self._interval,
            monotonic=monotonic,
            send=lambda topic, payload: self._send(topic, payload, retain=True),
        )
        self._health = MqttHealth(
            inbox,
            f"MQTT broker {settings.mqtt_host}:{settings.mqtt_port}",
            clock=clock,
            monotonic=monotonic,
        )
        self._acks = Acks(self._health)
        self._client = self._make_client(settings)

    def _make_client(self, s: Settings) -> paho.Client:
        client = build_client(s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._acks.on_publish
        return client

    # --- Sink interface (engine thread) -------------------------------------------------

    def start(self) -> None:
        """Connect in the background; never blocks, even when the broker is down."""
        host = self._settings.mqtt_host or ""
        log.info("connecting to MQTT broker %s:%d", host, self._settings.mqtt_port)
        self._client.will_set(self._topics.availability, OFFLINE, qos=QOS, retain=True)
        # clean_start=True on every connection (what clean_session=True is in 3.1.1).
        self._client.connect_async(
            host, self._settings.mqtt_port, keepalive=KEEPALIVE, clean_start=True
        )
        self._client.loop_start()
        self._started = True

    def publish(self, snapshot: Snapshot) -> None:
        """Remember the snapshot and publish it now if connected (else on the next connect)."""
        with self._lock:
            self._latest = snapshot
            if self._online and not self._closing:
                self._state.publish(snapshot)

    def event(self, event: Event) -> None:
        """Publish an event (not retained); events that happen while disconnected are dropped."""
        with self._lock:
            if not self._online or self._closing:
                log.debug("MQTT not connected: event %s not published", event.kind.value)
                return
            self._send(
                self._topics.events, json.dumps(redacted_json(event.to_json())), retain=False
            )

    def check(self, snapshot: Snapshot) -> None:
        """Heartbeat: re-send the state if nothing went out for 1.25 keep-alive intervals.

        HA's ``expire_after`` (two intervals + 60 s) then fires only on a hung engine.
        """
        with self._lock:
            self._latest = snapshot
            if self._online and not self._closing and self._state.heartbeat_due():
                self._state.publish(snapshot, force=True)

    @property
    def check_interval(self) -> float | None:
        """Twice per keep-alive interval (see :func:`pia_mqtt.mqtt.discovery.expire_after`)."""
        return self._interval / 2

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and the current state has been announced."""
        return self._announced.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and announced (online, discovery, state); False on timeout."""
        return self._announced.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until connected and every message published so far is acknowledged."""
        deadline = time.monotonic() + timeout
        if not self._announced.wait(timeout):
            return False
        with self._lock:
            pending = list(self._pending)
        for info in pending:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                return False
        return all(info.is_published() for info in pending)

    def close(self) -> None:
        """Publish ``offline`` (retained), wait for it (bounded), disconnect, stop the thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            timer, self._timer = self._timer, None
            online = self._online
        if timer is not None:
            timer.cancel()
            timer.join()
        if online:
            self.flush(CLOSE_TIMEOUT / 2)
            # The demo leaves nothing behind (no device in HA, no retained topic), and says
            # nothing on availability; the daemon says `offline`.
            last = "" if self._forget_on_close else OFFLINE
            t = self._topics
            forget = (self._discovery.topic, t.port, t.status, t.state)
            for topic in forget if self._forget_on_close else ():
                self._client.publish(topic, "", qos=QOS, retain=True)
            info = self._client.publish(self._topics.availability, last, qos=QOS, retain=True)
            try:
                info.wait_for_publish(CLOSE_TIMEOUT / 2)
            except (RuntimeError, ValueError):
                log.debug("offline message not confirmed by the broker")
        self._client.disconnect()
        if self._started:
            self._client.loop_stop()
        log.info("MQTT disconnected")

    # --- publishing (always under self._lock) --------------------------------------------

    def _send(self, topic: str, payload: str, *, retain: bool) -> None:
        try:
            info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        except Exception as exc:  # a publish must never take the engine down
            log.warning("publishing to MQTT topic %s failed: %s", topic, redact.describe(exc))
            return
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._pending = [i for i in self._pending if not i.is_published()]
            self._pending.append(info)
            self._acks.sent(info.mid, topic)
        else:
            log.debug("MQTT publish to %s not sent (%s)", topic, paho.error_string(info.rc))

    def _announce(self, *, after_birth: bool = False) -> None:
        with self._lock:
            if self._closing or (after_birth and not self._online):
                return
            self._send(self._topics.availability, ONLINE, retain=True)
            self._send(self._discovery.topic, self._discovery.payload, retain=True)
            if self._latest is not None:
                self._state.publish(self._latest, force=True)
            self._online = True
        if after_birth:
            log.info("re-sent discovery and state after Home Assistant came online")
            return
        self._announced.set()
        self._health.connected()

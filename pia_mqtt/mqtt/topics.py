"""The topic layout under ``MQTT_TOPIC`` and the stable ids derived from it (pure).

``unique_id`` values are part of the public contract: changing one makes Home Assistant
create ``_2`` duplicates, so they are derived only from ``MQTT_TOPIC`` and a key that never
changes. Discovery (:mod:`pia_mqtt.mqtt.discovery`) and the sink both build on these.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DEFAULT_TOPIC = "pia-mqtt"
SUPPORT_URL = "https://github.com/pia-mqtt/pia-mqtt"
ONLINE = "online"
OFFLINE = "offline"
PRESS = "PRESS"
QOS = 1
# Payload that Home Assistant's MQTT sensors read as "no value" (state unknown).
HA_NONE = "None"


@dataclass(frozen=True)
class Topics:
    """Every topic under ``MQTT_TOPIC``."""

    base: str

    @property
    def availability(self) -> str:
        """``online``/``offline``, retained; also the last will."""
        return f"{self.base}/availability"

    @property
    def port(self) -> str:
        """The forwarded port as text, retained."""
        return f"{self.base}/port"

    @property
    def status(self) -> str:
        """``starting``/``acquiring``/``active``/``error``, retained."""
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        """The whole state document (JSON), retained."""
        return f"{self.base}/state"

    @property
    def events(self) -> str:
        """Events (JSON), not retained."""
        return f"{self.base}/events"

    @property
    def refresh(self) -> str:
        """Command: bind the current port now."""
        return f"{self.base}/refresh"

    @property
    def new_port(self) -> str:
        """Command: drop the signature and get a new port."""
        return f"{self.base}/new_port"


def slug(text: str) -> str:
    """Lower-case ``text`` with every run of other characters than a-z, 0-9 made one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def device_id(topic: str) -> str:
    """Return the stable id of the device (the prefix of every unique_id) for ``MQTT_TOPIC``.

    ``pia_mqtt`` for the default topic, ``pia_mqtt_<slug>`` otherwise. It equals the
    slug Home Assistant derives from the device name, so entity ids look the same whether
    HA honours ``default_entity_id`` or derives them from the names.
    """
    if topic == DEFAULT_TOPIC:
        return "pia_mqtt"
    part = slug(topic) or hashlib.sha256(topic.encode()).hexdigest()[:8]
    return f"pia_mqtt_{part}"


def device_name(topic: str) -> str:
    """``PIA MQTT``, plus the topic when it is not the default one (several instances)."""
    return "PIA MQTT" if topic == DEFAULT_TOPIC else f"PIA MQTT {topic}"


def config_topic(prefix: str, topic: str) -> str:
    """Return the retained discovery topic of the device."""
    return f"{prefix}/device/{device_id(topic)}/config"


def expire_after(refresh_interval: int) -> int:
    """Seconds after which HA marks state sensors unavailable without an update.

    The publisher re-sends its state at least every keep-alive interval, so two missed
    intervals mean the engine is hung even if the broker still sees the client connected.
    """
    return 2 * refresh_interval + 60

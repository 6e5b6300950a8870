"""Home Assistant MQTT discovery payloads (pure: publishes nothing).

One device-based discovery message (HA >= 2024.11) on ``<prefix>/device/<id>/config``
describes the device, its origin, availability and every entity. The entities and the rules
that bite (enforced by the models themselves, so an invalid payload cannot be built):
:mod:`pia_mqtt.mqtt.components`; the topics and the stable ids: :mod:`pia_mqtt.mqtt.topics`.
Every name stays importable from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pia_mqtt.mqtt.components import TORRENT_CLIENTS, Component, StrictModel, components
from pia_mqtt.mqtt.topics import (
    DEFAULT_TOPIC,
    HA_NONE,
    OFFLINE,
    ONLINE,
    PRESS,
    QOS,
    SUPPORT_URL,
    Topics,
    config_topic,
    device_id,
    device_name,
    expire_after,
    slug,
)

__all__ = [
    "DEFAULT_TOPIC",
    "HA_NONE",
    "OFFLINE",
    "ONLINE",
    "PRESS",
    "QOS",
    "SUPPORT_URL",
    "TORRENT_CLIENTS",
    "Availability",
    "Component",
    "Device",
    "DeviceConfig",
    "Message",
    "Origin",
    "Topics",
    "components",
    "config_topic",
    "device_config",
    "device_id",
    "device_name",
    "discovery_message",
    "expire_after",
    "removal_message",
    "slug",
]


class Device(StrictModel):
    """The ``device`` block."""

    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class Origin(StrictModel):
    """The ``origin`` block (HA drops the whole message when it fails validation)."""

    name: str
    sw_version: str
    support_url: str


class Availability(StrictModel):
    """One entry of the shared ``availability`` list."""

    topic: str
    payload_available: str = ONLINE
    payload_not_available: str = OFFLINE


class DeviceConfig(StrictModel):
    """The whole device-based discovery message."""

    device: Device
    origin: Origin
    availability: list[Availability]
    qos: int = QOS
    components: dict[str, Component]


@dataclass(frozen=True)
class Message:
    """A message to publish: retained, QoS 1; an empty payload removes a retained one."""

    topic: str
    payload: str


def device_config(
    topic: str, *, version: str, refresh_interval: int, **clients: bool
) -> DeviceConfig:
    """Build the discovery document for the instance publishing under ``topic``.

    ``clients`` says which torrent clients are configured (``qbittorrent=True`` ...).
    """
    return DeviceConfig(
        device=Device(
            identifiers=[device_id(topic)],
            name=device_name(topic),
            manufacturer="pia-mqtt",
            model="PIA port forward",
            sw_version=version,
        ),
        origin=Origin(name="pia-mqtt", sw_version=version, support_url=SUPPORT_URL),
        availability=[Availability(topic=Topics(topic).availability)],
        components=components(topic, refresh_interval=refresh_interval, **clients),
    )


def discovery_message(
    topic: str,
    *,
    prefix: str,
    enabled: bool,
    version: str,
    refresh_interval: int,
    **clients: bool,
) -> Message:
    """Build the retained config message, or (discovery off) the empty one removing the device."""
    if not enabled:
        return removal_message(topic, prefix=prefix)
    config = device_config(topic, version=version, refresh_interval=refresh_interval, **clients)
    payload = json.dumps(config.model_dump(exclude_none=True), separators=(",", ":"))
    return Message(config_topic(prefix, topic), payload)


def removal_message(topic: str, *, prefix: str) -> Message:
    """Empty retained payload on the config topic: HA removes the device and its entities."""
    return Message(config_topic(prefix, topic), "")

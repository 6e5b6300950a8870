"""Home Assistant MQTT discovery payloads and the topic layout (pure: publishes nothing).

One device-based discovery message (HA >= 2024.11) on ``<prefix>/device/<id>/config``
describes the device, its origin, availability and every entity. Rules that bite are
enforced by the models themselves (see ``_Component._check``) so an invalid payload cannot
be built. ``unique_id`` values are part of the public contract: changing one makes Home
Assistant create ``_2`` duplicates, so they are derived only from ``MQTT_TOPIC`` and a key
that never changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from pia_mqtt.core.model import Status

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


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Device(_Model):
    """The ``device`` block."""

    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class Origin(_Model):
    """The ``origin`` block (HA drops the whole message when it fails validation)."""

    name: str
    sw_version: str
    support_url: str


class Availability(_Model):
    """One entry of the shared ``availability`` list."""

    topic: str
    payload_available: str = ONLINE
    payload_not_available: str = OFFLINE


class Component(_Model):
    """One entity in ``components``; the validator enforces HA's per-platform rules."""

    platform: Literal["sensor", "binary_sensor", "button"]
    unique_id: str
    default_entity_id: str
    name: str
    icon: str | None = None
    entity_category: Literal["diagnostic", "config"] | None = None
    device_class: str | None = None
    options: list[str] | None = None
    state_topic: str | None = None
    value_template: str | None = None
    json_attributes_topic: str | None = None
    json_attributes_template: str | None = None
    expire_after: int | None = None
    command_topic: str | None = None
    payload_press: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.default_entity_id.startswith(f"{self.platform}."):
            raise ValueError("default_entity_id must start with the platform (domain)")
        if self.platform == "button":
            if self.command_topic is None or self.state_topic is not None:
                raise ValueError("a button has a command_topic and no state_topic")
        elif self.state_topic is None or self.command_topic is not None:
            raise ValueError("a sensor has a state_topic and no command_topic")
        if self.platform == "sensor" and self.entity_category == "config":
            raise ValueError("sensors may only use entity_category diagnostic")
        if (self.device_class == "enum") != (self.options is not None):
            raise ValueError("options go with device_class enum, and only with it")
        return self


class DeviceConfig(_Model):
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


def _json_value(field: str) -> str:
    # A null field renders as "None", which HA's MQTT sensors read as "unknown" (no warning).
    return f"{{{{ value_json.{field} or '{HA_NONE}' }}}}"


# Each torrent client's state key and its name for people; "<Name> in sync" per client.
TORRENT_CLIENTS = {"qbittorrent": "qBittorrent", "transmission": "Transmission", "deluge": "Deluge"}

# qBittorrent's own word (transfer/info connection_status): only "connected" means a peer
# got in; unknown (None) while it is unreachable or never reported one.
_QBITTORRENT_CONNECTABLE_TEMPLATE = (
    "{% if value_json.qbittorrent is none"
    " or value_json.qbittorrent.connection_status is not defined %}None"
    "{% elif value_json.qbittorrent.connection_status == 'connected' %}ON{% else %}OFF{% endif %}"
)


def _in_sync_template(key: str) -> str:
    return (
        f"{{% if value_json.{key} is none %}}None"
        f"{{% elif value_json.{key}.state == 'in_sync' %}}ON{{% else %}}OFF{{% endif %}}"
    )


def components(topic: str, *, refresh_interval: int, **clients: bool) -> dict[str, Component]:
    """Every entity of the device, keyed by the stable key that ends its unique_id.

    ``clients`` names the configured torrent clients (``qbittorrent=True``, ...).
    """
    if unknown := set(clients) - set(TORRENT_CLIENTS):
        raise TypeError(f"unknown torrent clients: {sorted(unknown)}")
    base = device_id(topic)
    t = Topics(topic)
    expire = expire_after(refresh_interval)

    def comp(key: str, platform: str, suffix: str, name: str, **extra: object) -> Component:
        return Component.model_validate(
            {
                "platform": platform,
                "unique_id": f"{base}_{key}",
                "default_entity_id": f"{platform}.{base}_{suffix}",
                "name": name,
                **extra,
            }
        )

    items = [
        comp("port", "sensor", "forwarded_port", "Forwarded port", icon="mdi:lan-connect",
             state_topic=t.port, expire_after=expire),
        comp("status", "sensor", "status", "Status", icon="mdi:shield-sync-outline",
             device_class="enum", options=[s.value for s in Status], state_topic=t.status,
             json_attributes_topic=t.state,
             json_attributes_template="{{ {'last_error': value_json.last_error} | tojson }}",
             expire_after=expire),
        comp("expires", "sensor", "port_expires", "Port expires", device_class="timestamp",
             state_topic=t.state, value_template=_json_value("expires_at"), expire_after=expire),
        comp("last_refresh", "sensor", "last_refresh", "Last refresh",
             device_class="timestamp", entity_category="diagnostic", state_topic=t.state,
             value_template=_json_value("last_refresh"), expire_after=expire),
        comp("gateway", "sensor", "gateway", "Gateway", icon="mdi:router-network",
             entity_category="diagnostic", state_topic=t.state,
             value_template=_json_value("gateway"), json_attributes_topic=t.state,
             json_attributes_template="{{ {'hostname': value_json.hostname} | tojson }}",
             expire_after=expire),
    ]  # fmt: skip
    for key, label in TORRENT_CLIENTS.items():
        if clients.get(key):
            items.append(
                comp(
                    key,
                    "binary_sensor",
                    f"{key}_in_sync",
                    f"{label} in sync",
                    icon="mdi:sync",
                    state_topic=t.state,
                    value_template=_in_sync_template(key),
                    expire_after=expire,
                )
            )
    if clients.get(
        "qbittorrent"
    ):  # qBittorrent connectable (its connection_status), information only
        items.append(
            comp(
                "qbittorrent_connectable",
                "binary_sensor",
                "qbittorrent_connectable",
                "qBittorrent connectable",
                device_class="connectivity",
                state_topic=t.state,
                value_template=_QBITTORRENT_CONNECTABLE_TEMPLATE,
                expire_after=expire,
            )
        )
    items += [
        comp("refresh", "button", "refresh", "Refresh", icon="mdi:refresh",
             command_topic=t.refresh, payload_press=PRESS),
        comp("new_port", "button", "new_port", "New port", icon="mdi:dice-multiple",
             command_topic=t.new_port, payload_press=PRESS),
    ]  # fmt: skip
    return {c.unique_id.removeprefix(f"{base}_"): c for c in items}


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

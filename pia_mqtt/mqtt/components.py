"""Home Assistant discovery: one entity each, built and checked (pure: publishes nothing).

:class:`Component` enforces HA's per-platform rules in its validator, so an invalid entity
cannot be built; :func:`components` lists every entity of the device, keyed by the stable
key that ends its ``unique_id``. The device and the message around them:
:mod:`pia_mqtt.mqtt.discovery`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from pia_mqtt.core.model import Status
from pia_mqtt.mqtt.forwarding import EVENT_TEMPLATE, PORT_EVENT_TYPES, forwarding_template
from pia_mqtt.mqtt.topics import HA_NONE, PRESS, Topics, device_id, expire_after


class StrictModel(BaseModel):
    """Frozen and without unknown fields: the base of every discovery block."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Component(StrictModel):
    """One entity in ``components``; the validator enforces HA's per-platform rules."""

    platform: Literal["sensor", "binary_sensor", "button", "event"]
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
    event_types: list[str] | None = None

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
        if (self.platform == "event") != bool(self.event_types):
            raise ValueError("an event entity needs event_types, and only it has them")
        return self


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


# --- "Port forwarding" (connectivity) and "Port events" (event entity): see forwarding.py
def _forwarding_components(
    comp: Callable[..., Component], t: Topics, *, refresh_interval: int, expire: int
) -> list[Component]:
    """Stale means two ways: the last bind is too old (OFF), or no state arrives (unavailable)."""
    return [
        comp("forwarding", "binary_sensor", "port_forwarding", "Port forwarding",
             device_class="connectivity", state_topic=t.state,
             value_template=forwarding_template(refresh_interval), expire_after=expire),
        comp("events", "event", "port_events", "Port events", icon="mdi:bell-ring-outline",
             state_topic=t.events, event_types=list(PORT_EVENT_TYPES),
             value_template=EVENT_TEMPLATE),
    ]  # fmt: skip


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
    items += _forwarding_components(comp, t, refresh_interval=refresh_interval, expire=expire)
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

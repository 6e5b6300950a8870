"""Templates of the "Port forwarding" binary sensor and the "Port events" event entity.

Pure strings for :mod:`pia_mqtt.mqtt.discovery`. "Port forwarding" (device_class
connectivity) reads the retained state document: ON while the status is ``active`` and the
last successful bind is within two refresh intervals, OFF otherwise; when no state arrives
at all (a hung daemon the broker still sees connected) ``expire_after`` makes it
unavailable. "Port events" reads the events topic, which is not retained, so it fires once
per event; HA's MQTT event platform wants a JSON object with an ``event_type`` key.
"""

from __future__ import annotations

import json

# The events a person or an automation cares about; the others (hook ran, qBittorrent
# synced, command) are left out of the entity by its value_template, which renders nothing
# for them (HA ignores an empty rendering without a warning; an unlisted event_type would
# log one).
PORT_EVENT_TYPES = (
    "port_changed",
    "port_reapplied",
    "bound",
    "bind_failed",
    "renewed",
    "gateway_changed",
    "lost",
    "error",
)
EVENT_TEMPLATE = (
    "{% if value_json.event in " + json.dumps(list(PORT_EVENT_TYPES)) + " %}"
    "{{ {'event_type': value_json.event, 'port': value_json.port, "
    "'message': value_json.message, 'at': value_json.at} | tojson }}{% endif %}"
)


def forwarding_template(refresh_interval: int) -> str:
    """ON while the port is active and its last bind is fresh (within two intervals)."""
    return (
        "{% if value_json.status == 'active' and value_json.port and value_json.last_refresh "
        "and as_timestamp(now()) - as_timestamp(value_json.last_refresh, 0) <= "
        f"{2 * refresh_interval} %}}ON{{% else %}}OFF{{% endif %}}"
    )

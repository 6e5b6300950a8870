"""The "Port forwarding" binary sensor and the "Port events" entity, rendered like HA does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import pytest

from pia_mqtt.core.model import Event, EventKind, Snapshot, Status
from pia_mqtt.mqtt import discovery
from pia_mqtt.mqtt.forwarding import PORT_EVENT_TYPES

T0 = datetime(2026, 1, 14, 19, 30, tzinfo=UTC)
INTERVAL = 900
# Event types listed for HA before the engine emits them (none now).
PENDING_KINDS: set[str] = set()


def components() -> dict[str, dict[str, Any]]:
    """The components as HA receives them (parsed JSON)."""
    message = discovery.discovery_message(
        "pia-mqtt", prefix="homeassistant", enabled=True, version="1.2.3",
        qbittorrent=False, refresh_interval=INTERVAL,
    )  # fmt: skip
    comps: dict[str, dict[str, Any]] = json.loads(message.payload)["components"]
    return comps


def ha_render(template: str, payload: dict[str, Any], *, now: datetime = T0) -> str:
    """Render like HA's MQTT value templates: ``value_json``, ``now()``, ``as_timestamp()``."""

    def as_timestamp(value: object, default: object = None) -> object:
        try:
            return datetime.fromisoformat(str(value)).timestamp()
        except ValueError:
            return default

    env = jinja2.Environment(autoescape=False)  # noqa: S701 - renders ON/OFF and JSON
    env.globals.update(now=lambda: now, as_timestamp=as_timestamp)
    return env.from_string(template).render(value_json=payload, value=json.dumps(payload))


def bound(**extra: Any) -> Snapshot:
    """A port bound at T0."""
    values: dict[str, Any] = {
        "status": Status.ACTIVE, "updated_at": T0, "port": 54321, "last_refresh": T0,
    }  # fmt: skip
    return Snapshot(**(values | extra))


@pytest.mark.parametrize(
    ("case", "snapshot", "seconds_later", "expected"),
    [
        ("bound just now", bound(), 1, "ON"),
        ("last bind two intervals ago", bound(), 2 * INTERVAL, "ON"),
        ("last bind older than two intervals: stale", bound(), 2 * INTERVAL + 1, "OFF"),
        ("error", bound(status=Status.ERROR, last_error="bind failed"), 1, "OFF"),
        ("acquiring after a gateway move", bound(status=Status.ACQUIRING), 1, "OFF"),
        ("starting, no port yet", Snapshot(status=Status.STARTING, updated_at=T0), 1, "OFF"),
    ],
)
def test_port_forwarding_is_on_only_while_bound_and_fresh(
    case: str, snapshot: Snapshot, seconds_later: int, expected: str
) -> None:
    """ON while active with a bind within two intervals; OFF on error, while acquiring, when stale."""
    template = components()["forwarding"]["value_template"]
    now = T0 + timedelta(seconds=seconds_later)
    assert expected == ha_render(template, snapshot.to_json(), now=now), case


def test_port_forwarding_is_a_connectivity_sensor_that_expires() -> None:
    """device_class connectivity on the retained state; no update at all makes it unavailable."""
    comp = components()["forwarding"]
    assert (comp["platform"], comp["device_class"], comp["state_topic"], comp["name"]) == (
        "binary_sensor", "connectivity", "pia-mqtt/state", "Port forwarding",
    )  # fmt: skip
    assert comp["expire_after"] == discovery.expire_after(INTERVAL)


def test_port_events_entity_reads_the_events_topic() -> None:
    """An event entity on the (not retained) events topic, with every type it can fire."""
    comp = components()["events"]
    assert (comp["platform"], comp["state_topic"], comp["name"], comp["event_types"]) == (
        "event", "pia-mqtt/events", "Port events", list(PORT_EVENT_TYPES),
    )  # fmt: skip
    assert comp["default_entity_id"] == "event.pia_mqtt_port_events"


def test_every_port_event_type_is_an_event_the_engine_emits() -> None:
    """No event type is listed that the daemon never sends."""
    kinds = {k.value for k in EventKind}
    assert set(PORT_EVENT_TYPES) - kinds <= PENDING_KINDS


@pytest.mark.parametrize("kind", [k for k in EventKind if k.value in PORT_EVENT_TYPES])
def test_each_port_event_renders_the_payload_ha_needs(kind: EventKind) -> None:
    """HA's event platform needs a JSON object with `event_type`; the rest become attributes."""
    event = Event(kind, T0, "Port 54321 bound on 10.0.0.1", port=54321, data={"old_port": 1})
    rendered = ha_render(components()["events"]["value_template"], event.to_json())
    assert json.loads(rendered) == {
        "event_type": kind.value,
        "port": 54321,
        "message": "Port 54321 bound on 10.0.0.1",
        "at": "2026-01-14T19:30:00+00:00",
    }


@pytest.mark.parametrize("kind", [k for k in EventKind if k.value not in PORT_EVENT_TYPES])
def test_other_events_render_nothing_so_ha_ignores_them(kind: EventKind) -> None:
    """Hook, qBittorrent, gluetun and command events render empty: HA drops them without a warning."""
    event = Event(kind, T0, "something else", port=54321)
    assert "" == ha_render(components()["events"]["value_template"], event.to_json())

"""Home Assistant discovery payloads: exact snapshot, HA's rules, stable ids, templates."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import pytest

from pia_mqtt.core.model import SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.mqtt import discovery

SNAPSHOT_FILE = Path(__file__).parent / "snapshots" / "discovery.json"
T0 = datetime(2026, 1, 14, 19, 30, tzinfo=UTC)
CASES: dict[str, dict[str, Any]] = {
    "default topic, qBittorrent configured": {"topic": "pia-mqtt", "qbittorrent": True},
    "second instance, no qBittorrent": {"topic": "vpn/pia-2", "qbittorrent": False},
    "all three torrent clients": {
        "topic": "pia-mqtt", "qbittorrent": True, "transmission": True, "deluge": True,
    },
}  # fmt: skip


def build(
    topic: str = "pia-mqtt", *, qbittorrent: bool = True, interval: int = 900, **clients: bool
) -> dict[str, Any]:
    """The discovery message for ``topic`` as Home Assistant receives it: topic + parsed JSON."""
    message = discovery.discovery_message(
        topic, prefix="homeassistant", enabled=True, version="1.2.3",
        qbittorrent=qbittorrent, refresh_interval=interval, **clients,
    )  # fmt: skip
    return {"topic": message.topic, "payload": json.loads(message.payload)}


def test_discovery_json_matches_the_snapshot() -> None:
    """The exact discovery messages are pinned; UPDATE_SNAPSHOTS=1 rewrites the file after review."""
    actual = {name: build(**case) for name, case in CASES.items()}
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT_FILE.write_text(json.dumps(actual, indent=2) + "\n")
    assert json.loads(SNAPSHOT_FILE.read_text()) == actual


def test_unique_ids_never_change() -> None:
    """unique_ids are a public contract (a change makes HA create `_2` duplicates)."""
    assert {key: c["unique_id"] for key, c in build()["payload"]["components"].items()} == {
        "port": "pia_mqtt_port",
        "status": "pia_mqtt_status",
        "expires": "pia_mqtt_expires",
        "last_refresh": "pia_mqtt_last_refresh",
        "gateway": "pia_mqtt_gateway",
        "qbittorrent": "pia_mqtt_qbittorrent",
        "qbittorrent_connectable": "pia_mqtt_qbittorrent_connectable",
        "refresh": "pia_mqtt_refresh",
        "new_port": "pia_mqtt_new_port",
    }


@pytest.mark.parametrize(
    ("topic", "device_id", "name", "client"),
    [
        ("pia-mqtt", "pia_mqtt", "PIA MQTT", "pia-mqtt"),
        ("vpn/pia-2", "pia_mqtt_vpn_pia_2", "PIA MQTT vpn/pia-2", "pia-mqtt-vpn-pia-2"),
        ("pia_mqtt", "pia_mqtt_pia_mqtt", "PIA MQTT pia_mqtt", "pia-mqtt-pia-mqtt"),
        ("Home/PIA", "pia_mqtt_home_pia", "PIA MQTT Home/PIA", "pia-mqtt-home-pia"),
        ("-", "pia_mqtt_3973e022", "PIA MQTT -", "pia-mqtt-3973e022"),
    ],
)
def test_device_identity_per_topic(topic: str, device_id: str, name: str, client: str) -> None:
    """Device id, device name and default MQTT client id are derived from MQTT_TOPIC only."""
    from pia_mqtt.mqtt.client import default_client_id

    payload = build(topic)["payload"]
    assert (device_id, name, [device_id], client) == (
        discovery.device_id(topic), payload["device"]["name"], payload["device"]["identifiers"],
        default_client_id(topic),
    )  # fmt: skip


@pytest.mark.parametrize("topic", ["pia-mqtt", "vpn/pia-2"])
def test_every_component_follows_home_assistant_rules(topic: str) -> None:
    """Structural check of the whole message against the rules in reference/mqtt-home-assistant.md."""
    message = build(topic)
    payload = message["payload"]
    ident = discovery.device_id(topic)
    assert re.fullmatch(r"homeassistant/device/[a-zA-Z0-9_-]+/config", message["topic"])
    assert message["topic"] == f"homeassistant/device/{ident}/config"
    device = payload["device"]
    assert {"identifiers", "name", "manufacturer", "model", "sw_version"} <= device.keys()
    assert isinstance(device["identifiers"], list)
    assert device["identifiers"]
    origin = payload["origin"]
    url = urlsplit(origin["support_url"])
    assert (origin["name"], url.scheme, bool(url.netloc)) == ("pia-mqtt", "https", True)
    assert not ({"availability", "availability_topic"} <= payload.keys())
    assert [{"topic": f"{topic}/availability", "payload_available": "online",
             "payload_not_available": "offline"}] == payload["availability"]  # fmt: skip
    unique_ids = [c["unique_id"] for c in payload["components"].values()]
    assert len(unique_ids) == len(set(unique_ids))
    for key, comp in payload["components"].items():
        assert "object_id" not in comp
        assert "availability_topic" not in comp
        assert comp["unique_id"] == f"{ident}_{key}"
        platform = comp["platform"]
        assert re.fullmatch(rf"{platform}\.{ident}_[a-z0-9_]+", comp["default_entity_id"])
        if platform == "button":
            assert (comp["command_topic"], comp.get("payload_press", "PRESS")) == (
                f"{topic}/{key}",
                "PRESS",
            )
            assert "state_topic" not in comp
            continue
        assert comp["state_topic"].startswith(f"{topic}/")
        assert comp["expire_after"] > 900
        assert "command_topic" not in comp
        if platform == "sensor":
            assert comp.get("entity_category") in (None, "diagnostic")
        if comp.get("device_class") == "timestamp":
            assert not ({"state_class", "unit_of_measurement"} & comp.keys())
        if comp.get("device_class") == "enum":
            assert [s.value for s in Status] == comp["options"]
        else:
            assert "options" not in comp


def test_default_entity_ids_match_the_ids_ha_derives_from_names() -> None:
    """Old HA ignores default_entity_id; the derived ids (device name + entity name) are the same."""
    for topic in ("pia-mqtt", "vpn/pia-2"):
        payload = build(topic)["payload"]
        for comp in payload["components"].values():
            derived = discovery.slug(f"{payload['device']['name']} {comp['name']}")
            assert f"{comp['platform']}.{derived}" == comp["default_entity_id"]


def test_each_torrent_client_has_its_own_in_sync_sensor() -> None:
    """Transmission and Deluge get "... in sync" sensors (stable ids) only when configured."""
    comps = build(transmission=True, deluge=True)["payload"]["components"]
    assert [
        ("pia_mqtt_qbittorrent", "qBittorrent in sync"),
        ("pia_mqtt_transmission", "Transmission in sync"),
        ("pia_mqtt_deluge", "Deluge in sync"),
    ] == [
        (comps[k]["unique_id"], comps[k]["name"]) for k in ("qbittorrent", "transmission", "deluge")
    ]
    state = full_snapshot(
        sinks={"transmission": SinkHealth(SyncState.IN_SYNC, port=54321),
               "deluge": SinkHealth(SyncState.AUTH_FAILED)},
    ).to_json()  # fmt: skip
    assert ["None", "ON", "OFF"] == [
        render(comps[k]["value_template"], state) for k in ("qbittorrent", "transmission", "deluge")
    ]
    assert {"transmission", "deluge"}.isdisjoint(build()["payload"]["components"])


def test_qbittorrent_sensor_only_when_configured() -> None:
    """Without QBITTORRENT_HOST there is no qBittorrent binary sensor."""
    for key in ("qbittorrent", "qbittorrent_connectable"):
        assert key in build(qbittorrent=True)["payload"]["components"]
        assert key not in build(qbittorrent=False)["payload"]["components"]


def test_expire_after_allows_two_missed_keep_alives() -> None:
    """Sensors expire only after two keep-alive intervals (plus a minute) without any update."""
    assert (discovery.expire_after(900), discovery.expire_after(5)) == (1860, 70)
    assert {1860} == {
        c["expire_after"] for c in build()["payload"]["components"].values() if "expire_after" in c
    }


def test_removal_is_an_empty_payload_on_the_same_topic() -> None:
    """HA_DISCOVERY=false: an empty payload on the config topic removes the device."""
    message = discovery.discovery_message(
        "pia-mqtt", prefix="ha", enabled=False, version="1", qbittorrent=True, refresh_interval=900
    )
    assert discovery.Message("ha/device/pia_mqtt/config", "") == message


def test_invalid_components_cannot_be_built() -> None:
    """The models refuse what HA would reject (config-category sensor, button without command)."""
    base = {"unique_id": "x", "name": "X"}
    bad = [
        {
            "platform": "sensor",
            "default_entity_id": "sensor.x",
            "state_topic": "t",
            "entity_category": "config",
        },
        {"platform": "button", "default_entity_id": "button.x"},
        {"platform": "sensor", "default_entity_id": "button.x", "state_topic": "t"},
        {
            "platform": "sensor",
            "default_entity_id": "sensor.x",
            "state_topic": "t",
            "device_class": "enum",
        },
    ]
    for extra in bad:
        with pytest.raises(ValueError, match="validation error"):
            discovery.Component.model_validate(base | extra)


def render(template: str, state: dict[str, Any]) -> str:
    """Render a value template the way HA does (``value_json`` is the parsed payload)."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - renders JSON, not HTML
    return env.from_string(template).render(value_json=state, value=json.dumps(state))


def full_snapshot(**extra: Any) -> Snapshot:
    """A bound port with qBittorrent in sync."""
    values: dict[str, Any] = {
        "status": Status.ACTIVE, "updated_at": T0, "port": 54321, "gateway": "10.13.128.1",
        "hostname": "amsterdam404", "expires_at": T0 + timedelta(days=60), "last_refresh": T0,
        "sinks": {"qbittorrent": SinkHealth(SyncState.IN_SYNC, port=54321, last_sync=T0)},
    }  # fmt: skip
    return Snapshot(**(values | extra))


def test_templates_render_the_state_document() -> None:
    """Every value template gives HA what it accepts: ISO timestamps with offset, ON/OFF, None."""
    comps = build()["payload"]["components"]
    templates = {k: c["value_template"] for k, c in comps.items() if "value_template" in c}
    out_of_sync = full_snapshot(sinks={"qbittorrent": SinkHealth(SyncState.OUT_OF_SYNC)})
    empty = Snapshot(status=Status.STARTING, updated_at=T0)
    rendered = {
        name: {k: render(t, snap.to_json()) for k, t in templates.items()}
        for name, snap in (
            ("full", full_snapshot()),
            ("out_of_sync", out_of_sync),
            ("empty", empty),
        )
    }
    assert rendered == {
        "full": {"expires": "2026-03-15T19:30:00+00:00", "last_refresh": "2026-01-14T19:30:00+00:00",
                 "gateway": "10.13.128.1", "qbittorrent": "ON", "qbittorrent_connectable": "None"},
        "out_of_sync": {"expires": "2026-03-15T19:30:00+00:00", "last_refresh": "2026-01-14T19:30:00+00:00",
                        "gateway": "10.13.128.1", "qbittorrent": "OFF",
                        "qbittorrent_connectable": "None"},
        "empty": {"expires": "None", "last_refresh": "None", "gateway": "None", "qbittorrent": "None",
                  "qbittorrent_connectable": "None"},
    }  # fmt: skip
    for value in rendered["full"].values():
        if value[:1].isdigit() and "T" in value:
            assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("status", "shown"),
    [("connected", "ON"), ("firewalled", "OFF"), ("disconnected", "OFF"), (None, "None")],
)
def test_qbittorrent_connectable_follows_connection_status(status: str | None, shown: str) -> None:
    """The "qBittorrent connectable" sensor is ON only for connected; unknown when none was read."""
    template = build()["payload"]["components"]["qbittorrent_connectable"]["value_template"]
    details = (("connection_status", status),) if status is not None else ()
    health = SinkHealth(SyncState.IN_SYNC, port=54321, last_sync=T0, details=details)
    state = full_snapshot(sinks={"qbittorrent": health}).to_json()
    assert render(template, state) == shown


def test_attribute_templates_render_json_objects() -> None:
    """json_attributes_template output is a JSON object (HA ignores anything else)."""
    comps = build()["payload"]["components"]
    state = full_snapshot(last_error="bind failed: busy").to_json()
    env = jinja2.Environment(autoescape=False)  # noqa: S701
    attrs = {
        k: json.loads(env.from_string(c["json_attributes_template"]).render(value_json=state))
        for k, c in comps.items()
        if "json_attributes_template" in c
    }
    assert attrs == {
        "status": {"last_error": "bind failed: busy"},
        "gateway": {"hostname": "amsterdam404"},
    }


DOC = Path(__file__).parents[1] / "docs" / "home-assistant.md"


def yaml_blocks(text: str) -> list[str]:
    """Every fenced ```yaml block of a Markdown document."""
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_home_assistant_doc_yaml_uses_real_entities_and_topics() -> None:
    """Each YAML block in docs/home-assistant.md parses and names only entities and topics we publish."""
    import yaml

    payload = build()["payload"]
    entity_ids = {c["default_entity_id"] for c in payload["components"].values()}
    topics = {
        f"pia-mqtt/{name}"
        for name in ("availability", "port", "status", "state", "events", "refresh", "new_port")
    }
    blocks = yaml_blocks(DOC.read_text())
    assert len(blocks) == 4  # the card and three automations
    for block in blocks:
        parsed = yaml.safe_load(block)
        assert isinstance(parsed, dict)
        used = set(re.findall(r"\b(?:sensor|binary_sensor|button)\.pia_mqtt_[a-z0-9_]+", block))
        used_topics = set(re.findall(r"\bpia-mqtt/[a-z_]+", block))
        assert used or used_topics
        assert used <= entity_ids
        assert used_topics <= topics
    card = yaml.safe_load(blocks[0])
    rows = [r["entity"] for r in card["entities"] if "entity" in r]
    rows += [
        b["entity"] for r in card["entities"] if r.get("type") == "buttons" for b in r["entities"]
    ]
    assert entity_ids == set(rows)
    error_alert = yaml.safe_load(blocks[2])
    status_options = payload["components"]["status"]["options"]
    assert {"error"} == {t["to"] for t in error_alert["triggers"]} & set(status_options)


def test_mqtt_doc_lists_every_topic() -> None:
    """docs/mqtt.md documents each topic pia-mqtt uses, and its state example follows the schema."""
    import jsonschema

    text = (Path(__file__).parents[1] / "docs" / "mqtt.md").read_text()
    topics = discovery.Topics("<topic>")
    names = [
        name
        for name in dir(discovery.Topics)
        if isinstance(getattr(discovery.Topics, name), property)
    ]
    assert len(names) == 7
    for name in names:
        assert f"`{getattr(topics, name)}`" in text
    assert "`<prefix>/device/<id>/config`" in text
    assert "`<prefix>/status`" in text
    schema = json.loads((Path(__file__).parents[1] / "docs" / "state.schema.json").read_text())
    example = json.loads(
        re.findall(r"^```json\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)[0]
    )
    jsonschema.validate(example, schema)
    assert set(example) == set(Snapshot(status=Status.ACTIVE, updated_at=T0).to_json())

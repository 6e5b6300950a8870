"""The values that flow from the engine to the sinks, and their JSON forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pia_mqtt.core.model import (
    Event,
    EventKind,
    SinkHealth,
    Snapshot,
    Status,
    SyncState,
    iso,
    iso_z,
    valid_port,
)

T0 = datetime(2026, 1, 14, 19, 30, 0, 114369, tzinfo=UTC)


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (0, False),
        (1, True),
        (54321, True),
        (65535, True),
        (65536, False),
        (-1, False),
        (True, False),
        (False, False),
        ("80", False),
        (80.0, False),
        (None, False),
    ],
)
def test_valid_port_accepts_only_ints_from_1_to_65535(port: object, expected: bool) -> None:
    """Only a real int in range is a port: not 0, not a bool, not text, not None."""
    assert expected == valid_port(port)


@pytest.mark.parametrize(
    ("moment", "expected_iso", "expected_z"),
    [
        (None, None, None),
        (T0, "2026-01-14T19:30:00+00:00", "2026-01-14T19:30:00Z"),
        (
            datetime(2026, 1, 14, 21, 30, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-14T19:30:59+00:00",
            "2026-01-14T19:30:59Z",
        ),
        (
            datetime(2026, 1, 14, 14, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            "2026-01-14T19:30:00+00:00",
            "2026-01-14T19:30:00Z",
        ),
    ],
)
def test_iso_forms_are_utc_to_the_second(
    moment: datetime | None, expected_iso: str | None, expected_z: str | None
) -> None:
    """iso() keeps the +00:00 offset (Home Assistant), iso_z() ends in Z (the seed's files)."""
    assert (expected_iso, expected_z) == (iso(moment), iso_z(moment))


def test_a_full_snapshot_renders_every_field() -> None:
    """to_json() is the MQTT state document: every field, times in UTC with offsets."""
    snapshot = Snapshot(
        status=Status.ACTIVE,
        updated_at=T0,
        port=54321,
        gateway="10.13.128.1",
        hostname="montreal424",
        expires_at=T0 + timedelta(days=60),
        last_refresh=T0,
        next_refresh=T0 + timedelta(minutes=15),
        last_error=None,
        sinks={
            "qbittorrent": SinkHealth(SyncState.IN_SYNC, port=54321, last_sync=T0),
            "transmission": SinkHealth(SyncState.AUTH_FAILED, port=41234, error="401"),
            "gluetun": SinkHealth(SyncState.UNREACHABLE, error="connection refused"),
            "hook": SinkHealth(SyncState.IN_SYNC),
        },
    )
    expected = {
        "port": 54321,
        "status": "active",
        "source": "pia",
        "gateway": "10.13.128.1",
        "hostname": "montreal424",
        "expires_at": "2026-03-15T19:30:00+00:00",
        "last_refresh": "2026-01-14T19:30:00+00:00",
        "next_refresh": "2026-01-14T19:45:00+00:00",
        "last_error": None,
        "qbittorrent": {
            "state": "in_sync",
            "port": 54321,
            "last_sync": "2026-01-14T19:30:00+00:00",
            "error": None,
        },
        "transmission": {"state": "auth_failed", "port": 41234, "last_sync": None, "error": "401"},
        "deluge": None,
        "gluetun": {
            "state": "unreachable",
            "port": None,
            "last_sync": None,
            "error": "connection refused",
        },
        "updated_at": "2026-01-14T19:30:00+00:00",
    }
    assert expected == snapshot.to_json()


def test_a_starting_snapshot_renders_nulls() -> None:
    """Before the first port every optional field is null, and no sink is reported."""
    expected = {
        "port": None,
        "status": "starting",
        "source": "pia",
        "gateway": None,
        "hostname": None,
        "expires_at": None,
        "last_refresh": None,
        "next_refresh": None,
        "last_error": None,
        "qbittorrent": None,
        "transmission": None,
        "deluge": None,
        "gluetun": None,
        "updated_at": "2026-01-14T19:30:00+00:00",
    }
    assert expected == Snapshot(status=Status.STARTING, updated_at=T0).to_json()


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            Event(
                EventKind.PORT_CHANGED,
                T0,
                "port changed to 54321",
                port=54321,
                data={"old_port": 47047},
            ),
            {
                "event": "port_changed",
                "at": "2026-01-14T19:30:00+00:00",
                "port": 54321,
                "message": "port changed to 54321",
                "old_port": 47047,
            },
        ),
        (
            Event(EventKind.BIND_FAILED, T0, "bindPort failed: timeout"),
            {
                "event": "bind_failed",
                "at": "2026-01-14T19:30:00+00:00",
                "port": None,
                "message": "bindPort failed: timeout",
            },
        ),
    ],
)
def test_event_to_json_is_flat(event: Event, expected: dict[str, object]) -> None:
    """An event renders kind, time, port and message, with its extra data merged in."""
    assert expected == event.to_json()


def test_values_are_immutable() -> None:
    """Snapshots are shared between threads: assigning a field is refused."""
    snapshot = Snapshot(status=Status.ACTIVE, updated_at=T0, port=1)
    with pytest.raises(AttributeError):
        snapshot.port = 2  # type: ignore[misc]
    assert 1 == snapshot.port

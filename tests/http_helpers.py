"""Shared by the HTTP endpoint's tests: a bound snapshot and a metrics-text reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pia_mqtt.core.model import SinkHealth, Snapshot, Status, SyncState

T0 = datetime(2026, 1, 14, 19, 30, tzinfo=UTC)
INTERVAL = 900


def bound(at: datetime = T0, **extra: Any) -> Snapshot:
    """A port bound at ``at`` with qBittorrent in sync."""
    values: dict[str, Any] = {
        "status": Status.ACTIVE, "updated_at": at, "port": 54321, "gateway": "10.13.128.1",
        "hostname": "amsterdam404", "expires_at": at + timedelta(days=60), "last_refresh": at,
        "next_refresh": at + timedelta(seconds=INTERVAL),
        "sinks": {"qbittorrent": SinkHealth(SyncState.IN_SYNC, port=54321, last_sync=at)},
    }  # fmt: skip
    return Snapshot(**(values | extra))


def samples(text: str) -> dict[str, float]:
    """Sample lines of an exposition document: ``name{labels}`` -> value."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }

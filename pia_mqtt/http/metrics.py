"""``/metrics`` in Prometheus' text exposition format 0.0.4 (pure: a view in, text out).

A small writer instead of ``prometheus_client``: the daemon has no metric objects to keep,
only a view to print once per scrape, and the library would add its registry, its
multiprocess and OpenMetrics code and a dependency for what is forty lines here. The
output is checked by ``promtool check metrics`` and scraped by a real Prometheus in the
tests. Names follow Prometheus' naming guide: one ``pia_mqtt_`` prefix, base units
(seconds), ``_total`` for counters, ``_timestamp_seconds`` for moments, state sets as a
label with the value 1 for the current state, ``_info`` with the value 1 for build data.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from datetime import datetime

from pia_mqtt.core.model import EventKind, SinkHealth, Status, SyncState, valid_port
from pia_mqtt.http.board import OTHER_FAILURE, REFUSAL_REASONS, View

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "pia_mqtt_"

Sample = tuple[dict[str, str], float]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        rows = list(samples)
        if not rows:
            return
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_text.replace(chr(92), chr(92) * 2)}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            self.lines.append(
                f"{full}{{{text}}} {_number(value)}" if text else f"{full} {_number(value)}"
            )

    def gauge(self, name: str, help_text: str, value: float | None) -> None:
        self.metric(name, "gauge", help_text, [] if value is None else [({}, value)])

    def counter(self, name: str, help_text: str, value: float) -> None:
        self.metric(name, "counter", help_text, [({}, value)])


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _connectable(health: SinkHealth) -> bool | None:
    # A torrent client that says whether peers reach it reports its own word in the
    # health's details (qBittorrent's connection_status: only "connected" means a peer got
    # in); clients that do not report it have no sample at all.
    status = dict(health.details).get("connection_status")
    return None if status is None else status == "connected"


def render(view: View, *, version: str) -> str:
    """The whole ``/metrics`` document."""
    s, counts = view.snapshot, view.counts
    w = _Writer()
    w.gauge(
        "forwarded_port",
        "The forwarded port number; absent while none is held.",
        s.port if valid_port(s.port) else None,
    )
    w.metric(
        "status",
        "gauge",
        "Health of the port forward: 1 for the current status.",
        [({"status": status.value}, int(s.status is status)) for status in Status],
    )
    w.gauge(
        "status_since_timestamp_seconds", "When the status last changed.", _ts(view.status_since)
    )
    w.counter(
        "binds_total",
        "Successful bindPort calls (keep-alives included), or port confirmations from gluetun.",
        counts.binds,
    )
    reasons = sorted({*REFUSAL_REASONS, "other", OTHER_FAILURE, *counts.bind_failures})
    w.metric(
        "bind_failures_total",
        "counter",
        'Failed attempts to hold the port: PIA refusals by reason, reason="error" for '
        "network, gateway or token faults.",
        [({"reason": r}, counts.bind_failures.get(r, 0)) for r in reasons],
    )
    w.counter("port_changes_total", "Times the forwarded port number changed.", counts.port_changes)
    w.counter(
        "signature_renewals_total", "Signatures renewed before they expired.", counts.renewals
    )
    w.counter(
        "gateway_changes_total",
        "Gateway re-detections that found another gateway.",
        counts.gateway_changes,
    )
    kinds = sorted({*(k.value for k in EventKind), *counts.events})
    w.metric(
        "events_total",
        "counter",
        "Events dispatched by the engine, by kind.",
        [({"event": k}, counts.events.get(k, 0)) for k in kinds],
    )
    w.gauge(
        "last_bind_timestamp_seconds",
        "Last successful bind (or gluetun confirmation).",
        _ts(s.last_refresh),
    )
    w.gauge(
        "lease_expiry_timestamp_seconds",
        "When PIA's signature, and so the port, expires.",
        _ts(s.expires_at),
    )
    w.gauge(
        "next_refresh_timestamp_seconds",
        "When the next keep-alive or retry is due.",
        _ts(s.next_refresh),
    )
    sinks = sorted(s.sinks.items())
    w.metric(
        "sink_in_sync",
        "gauge",
        "1 when the sink holds the forwarded port.",
        [({"sink": n}, int(h.state is SyncState.IN_SYNC)) for n, h in sinks],
    )
    w.metric(
        "sink_state",
        "gauge",
        "Each sink's sync state: 1 for the current state.",
        [
            ({"sink": n, "state": st.value}, int(h.state is st))
            for n, h in sinks
            for st in SyncState
        ],
    )
    w.metric(
        "sink_last_sync_timestamp_seconds",
        "gauge",
        "When the sink was last in sync.",
        [({"sink": n}, h.last_sync.timestamp()) for n, h in sinks if h.last_sync],
    )
    w.metric(
        "sink_connectable",
        "gauge",
        "1 when the torrent client says peers can reach it.",
        [({"sink": n}, int(c)) for n, h in sinks if (c := _connectable(h)) is not None],
    )
    w.metric(
        "build_info",
        "gauge",
        "Version of pia-mqtt and Python; always 1.",
        [({"version": version, "python": platform.python_version(), "source": s.source}, 1)],
    )
    return "\n".join(w.lines) + "\n"

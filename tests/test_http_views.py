"""The status endpoint's pure parts: counters from snapshots and events, metrics text, page."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pia_mqtt.core.model import Event, EventKind, SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.http import metrics, page
from pia_mqtt.http.board import Board
from tests.fixtures.prometheus import promtool_check
from tests.http_helpers import T0, bound, samples


def busy_history() -> Board:
    """Three binds, a refusal, a network error, a renewal, a port change, a gateway move."""
    board = Board(Snapshot(status=Status.STARTING, updated_at=T0))
    for i, snapshot in enumerate([
        bound(), bound(), bound(T0 + timedelta(minutes=15)), bound(T0 + timedelta(minutes=30)),
    ]):  # fmt: skip
        board.publish(snapshot)
        board.record(Event(EventKind.PORT_CHANGED, T0, "changed") if i == 0 else
                     Event(EventKind.HOOK_RAN, T0, "hook"))  # fmt: skip
    board.record(Event(EventKind.BIND_FAILED, T0, "busy", data={"reason": "busy"}))
    board.record(Event(EventKind.BIND_FAILED, T0, "??", data={"reason": "made-up"}))
    board.record(Event(EventKind.ERROR, T0, "timeout"))
    board.record(Event(EventKind.RENEWED, T0, "renewed"))
    board.record(Event(EventKind.GATEWAY_CHANGED, T0, "moved"))
    board.publish(bound(T0 + timedelta(minutes=30), status=Status.ERROR, last_error="timeout"))
    return board


def test_counters_come_from_snapshots_and_events() -> None:
    """A bind is a new last_refresh; failures by reason (unknown ones as "other"), and the rest."""
    counts = busy_history().view().counts
    assert (counts.binds, dict(counts.bind_failures), counts.port_changes, counts.renewals,
            counts.gateway_changes) == (3, {"busy": 1, "other": 1, "error": 1}, 1, 1, 1)  # fmt: skip


def test_the_board_keeps_the_last_ten_events_newest_first() -> None:
    """Only the last few events are kept for the page."""
    board = Board(Snapshot(status=Status.STARTING, updated_at=T0))
    for i in range(15):
        board.record(Event(EventKind.BOUND, T0, f"event {i}"))
    assert [e.message for e in board.view().events] == [f"event {i}" for i in range(14, 4, -1)]


def test_metrics_samples_say_what_happened() -> None:
    """Port gauge, status set, counters, timestamps, sink state and build info."""
    text = metrics.render(busy_history().view(), version="1.2.3")
    got = samples(text)
    t30 = (T0 + timedelta(minutes=30)).timestamp()
    expected = {
        "pia_mqtt_forwarded_port": 54321,
        'pia_mqtt_status{status="error"}': 1,
        'pia_mqtt_status{status="active"}': 0,
        "pia_mqtt_binds_total": 3,
        'pia_mqtt_bind_failures_total{reason="busy"}': 1,
        'pia_mqtt_bind_failures_total{reason="error"}': 1,
        'pia_mqtt_bind_failures_total{reason="expired"}': 0,
        "pia_mqtt_port_changes_total": 1,
        "pia_mqtt_signature_renewals_total": 1,
        "pia_mqtt_gateway_changes_total": 1,
        'pia_mqtt_events_total{event="hook_ran"}': 3,
        "pia_mqtt_last_bind_timestamp_seconds": t30,
        "pia_mqtt_lease_expiry_timestamp_seconds": t30 + 60 * 86400,
        "pia_mqtt_status_since_timestamp_seconds": t30,
        'pia_mqtt_sink_in_sync{sink="qbittorrent"}': 1,
        'pia_mqtt_sink_state{sink="qbittorrent",state="auth_failed"}': 0,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert [k for k in got if k.startswith('pia_mqtt_build_info{version="1.2.3"')]


def test_metrics_pass_promtool() -> None:
    """promtool check metrics finds nothing to complain about (names, types, help, units)."""
    done = promtool_check(metrics.render(busy_history().view(), version="1.2.3"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_no_port_gauge_before_a_port_is_held() -> None:
    """While starting there is no port sample at all (never a 0)."""
    view = Board(Snapshot(status=Status.STARTING, updated_at=T0)).view()
    assert "pia_mqtt_forwarded_port" not in metrics.render(view, version="1")


def test_label_values_are_escaped() -> None:
    """A sink name with quotes, backslashes or newlines cannot break the format."""
    board = Board(bound(sinks={'we"ird\\\n': SinkHealth(SyncState.UNREACHABLE)}))
    text = metrics.render(board.view(), version="1")
    assert 'pia_mqtt_sink_in_sync{sink="we\\"ird\\\\\\n"} 0' in text
    assert promtool_check(text).returncode == 0


def test_the_page_escapes_html() -> None:
    """Error text and event messages are escaped, never markup."""
    board = Board(bound(last_error="<script>alert(1)</script>"))
    board.record(Event(EventKind.ERROR, T0, "<img src=x>"))
    text = page.render(board.view(), now=T0, version="1")
    assert "<script>" not in text
    assert "<img" not in text
    assert "&lt;script&gt;" in text


def test_page_before_any_port() -> None:
    """While starting the page shows a dash, not a port."""
    view = Board(Snapshot(status=Status.STARTING, updated_at=T0)).view()
    text = page.render(view, now=T0, version="1")
    assert '<div class="port" id="port">&mdash;</div>' in text
    assert "starting" in text


@pytest.mark.parametrize(
    ("status", "expected"), [("connected", 1), ("firewalled", 0), ("disconnected", 0)]
)
def test_connectable_where_the_client_reports_it(status: str, expected: int) -> None:
    """pia_mqtt_sink_connectable follows qBittorrent's connection_status; absent for others."""
    health = SinkHealth(SyncState.IN_SYNC, port=1, details=(("connection_status", status),))
    board = Board(bound(sinks={"qbittorrent": health, "gluetun": SinkHealth(SyncState.IN_SYNC)}))
    got = samples(metrics.render(board.view(), version="1"))
    assert {k: v for k, v in got.items() if k.startswith("pia_mqtt_sink_connectable")} == {
        'pia_mqtt_sink_connectable{sink="qbittorrent"}': expected
    }

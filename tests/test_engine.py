"""The engine and lease manager end to end: real HTTPS simulator, fake clock.

Each test names a behaviour from the design ("Behaviour" section) and checks the whole
outcome: what the simulator saw, what the files say, what the sinks were told.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import Command, EventKind, Status
from pia_mqtt.pia.retry import MAX_BACKOFF
from pia_mqtt.simulator.pia import (
    BAD_JSON,
    BAD_SIGNATURE,
    BUSY,
    SERVER_ERROR,
    UNAUTHORIZED_CLIENT,
    PiaSimulator,
    payload_reply,
)
from tests.harness import advance, at, build_daemon

DAY = 24 * 3600


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


def test_first_start_binds_a_new_port_and_writes_both_files(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """Token -> getSignature -> bindPort, then PORT_FILE and PORT_DATA_FILE hold the port."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        port = stats.issued_ports[0]
        data = daemon.data()
        assert (stats.signature_requests, stats.bound_ports) == (1, (port,))
        assert daemon.port_file.read_text() == f"{port}\n"
        assert {
            "port": port,
            "status": "active",
            "gateway": "127.0.0.1",
            "hostname": "sim-gateway-1",
        } == {k: data[k] for k in ("port", "status", "gateway", "hostname")}
        assert data["timestamp"].endswith("Z")
        assert data["next_refresh"].endswith("Z")
        assert daemon.recorder.kinds() == [EventKind.PORT_CHANGED]
        assert 0o600 == daemon.state_file.stat().st_mode & 0o777
        daemon.engine.close()


def test_three_days_of_keepalives_bind_every_interval_on_the_same_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """bindPort runs every PORT_FORWARD_REFRESH_INTERVAL; one signature serves them all."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, interval=900, watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 3 * DAY + 1)
        stats = pia_sim.gateways[0].stats()
        assert 1 == stats.signature_requests
        assert 1 + 3 * DAY // 900 == stats.binds_ok
        assert {stats.issued_ports[0]} == set(stats.bound_ports)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        daemon.engine.close()


def test_signature_is_renewed_before_the_seven_day_margin(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A 10-day signature is replaced after 3 days (7 days left): new port, renewed event."""
    pia_sim.signature_lifetime = timedelta(days=10)
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, watch_interval=3600)
        daemon.engine.start()
        advance(daemon.engine, traveller, 3 * DAY - 1000)
        first = pia_sim.gateways[0].stats().issued_ports
        advance(daemon.engine, traveller, 2000)
        stats = pia_sim.gateways[0].stats()
        assert 1 == len(first)
        assert 2 == len(stats.issued_ports)
        new_port = stats.issued_ports[1]
        assert new_port == daemon.engine.snapshot.port
        assert daemon.port_file.read_text() == f"{new_port}\n"
        assert [EventKind.PORT_CHANGED, EventKind.RENEWED, EventKind.PORT_CHANGED] == (
            daemon.recorder.kinds()
        )
        assert json.loads(daemon.state_file.read_text())["port"] == new_port
        daemon.engine.close()


def test_restart_with_a_saved_lease_binds_the_same_port_without_a_new_signature(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """The saved getSignature reply is bound again at start: same port, no getSignature."""
    with at(utc_now()) as traveller:
        first = build_daemon(pia_sim, tmp_path)
        first.engine.start()
        advance(first.engine, traveller, 5)
        port = first.engine.snapshot.port
        first.engine.close()

        second = build_daemon(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        assert port == second.engine.snapshot.port
        assert 1 == stats.signature_requests
        assert (port, port) == stats.bound_ports
        assert second.port_file.read_text() == f"{port}\n"
        second.engine.close()


def test_a_restart_that_keeps_the_port_is_not_a_port_change(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """Across a restart the same port is ``bound``, not ``port_changed`` (DESIGN's rule).

    The snapshot carries the port from before the restart as ``previous_port``.
    """
    with at(utc_now()) as traveller:
        first = build_daemon(pia_sim, tmp_path)
        first.engine.start()
        advance(first.engine, traveller, 5)
        port = first.engine.snapshot.port
        first.engine.close()

        second = build_daemon(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        assert [EventKind.PORT_CHANGED] == first.recorder.kinds()
        assert [EventKind.BOUND] == second.recorder.kinds()
        assert (port, port) == (second.engine.snapshot.port, second.engine.snapshot.previous_port)
        second.engine.close()


def test_a_new_port_after_a_restart_names_the_port_from_before_it(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """new_port, then a restart.

    Last_port outlives the dropped lease, so the next start's new port is a ``port_changed``
    whose old_port is the port published before.
    """
    with at(utc_now()) as traveller:
        first = build_daemon(pia_sim, tmp_path)
        first.engine.start()
        advance(first.engine, traveller, 5)
        port = first.engine.snapshot.port
        first.manager._drop_lease()  # what new_port does first; the process dies right after
        first.engine.close()

        second = build_daemon(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        new_port = second.engine.snapshot.port
        assert new_port != port
        changed = [e for e in second.recorder.events if e.kind is EventKind.PORT_CHANGED]
        assert [port] == [e.data["old_port"] for e in changed]
        assert port == second.engine.snapshot.previous_port
        second.engine.close()


def test_saved_lease_with_less_than_seven_days_left_is_replaced_at_start(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A saved signature inside the 7-day margin is not reused: a new port is requested."""
    pia_sim.signature_lifetime = timedelta(days=8)
    with at(utc_now()) as traveller:
        first = build_daemon(pia_sim, tmp_path, interval=900)
        first.engine.start()
        advance(first.engine, traveller, 5)
        first.engine.close()
        traveller.shift(2 * DAY)
        second = build_daemon(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        assert 2 == stats.signature_requests
        assert stats.issued_ports[1] == second.engine.snapshot.port
        second.engine.close()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [(BUSY, "busy"), (BAD_SIGNATURE, "bad_signature"), (UNAUTHORIZED_CLIENT, "unauthorized")],
)
def test_refused_keepalive_gets_a_new_signature_at_once(
    pia_sim: PiaSimulator, tmp_path: Path, reply: object, reason: str
) -> None:
    """409 busy / 401 bad signature / 401 unauthorized on bindPort -> new token + signature."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        pia_sim.gateways[0].fail_next(reply)  # type: ignore[arg-type]
        advance(daemon.engine, traveller, 900)
        stats = pia_sim.gateways[0].stats()
        assert 2 == len(stats.issued_ports)
        assert stats.issued_ports[1] == daemon.engine.snapshot.port
        assert Status.ACTIVE == daemon.engine.snapshot.status
        failed = [e for e in daemon.recorder.events if e.kind is EventKind.BIND_FAILED]
        assert [reason] == [e.data["reason"] for e in failed]
        daemon.engine.close()


def test_gateway_down_backs_off_capped_at_60_s_then_recovers_the_same_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """Network faults: status error with the cause, retries 2, 4, 8 ... capped at 60 s."""
    gateway = pia_sim.gateways[0]
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        gateway.stop()
        # The keep-alive at 900 s fails first; the retries follow within 200 s.
        advance(daemon.engine, traveller, 900 + 200)
        errors = [e for e in daemon.recorder.events if e.kind is EventKind.ERROR]
        delays = [e.data["retry_in"] for e in errors]
        advance(daemon.engine, traveller, 30 * 60)
        all_delays = [
            e.data["retry_in"] for e in daemon.recorder.events if e.kind is EventKind.ERROR
        ]
        assert [2.0, 4.0, 8.0, 16.0, 32.0, 60.0] == delays[:6]
        assert MAX_BACKOFF == max(all_delays)
        assert Status.ERROR == daemon.engine.snapshot.status
        assert "Could not detect gateway IP" in (daemon.engine.snapshot.last_error or "")
        assert "error" == daemon.data()["status"]
        assert port == daemon.data()["port"]

        gateway.start()
        advance(daemon.engine, traveller, 61)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert port == daemon.engine.snapshot.port
        assert 1 == gateway.stats().signature_requests
        daemon.engine.close()


def test_wrong_credentials_name_the_variables_and_retry_only_once_a_minute(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A refused token: error naming PIA_USER/PIA_PASS, no tight loop (60 s between tries)."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, password="wrong-password-123")
        daemon.engine.start()
        advance(daemon.engine, traveller, 600)
        error = daemon.engine.snapshot.last_error or ""
        assert Status.ERROR == daemon.engine.snapshot.status
        assert "PIA_USER" in error
        assert "PIA_PASS" in error
        assert "wrong-password-123" not in error
        # Tries at 0, 60, ... 540 s: ten in ten minutes.
        assert 10 == pia_sim.token_endpoint.stats().requests
        assert not daemon.port_file.exists()
        daemon.engine.close()


@pytest.mark.parametrize(
    "reply",
    [
        BAD_JSON,
        payload_reply("not base64 at all!"),
        payload_reply({"token": "t", "port": 0, "expires_at": "2030-01-01T00:00:00Z"}),
        payload_reply({"token": "t", "expires_at": "2030-01-01T00:00:00Z"}),
        SERVER_ERROR,
    ],
    ids=["bad-json", "bad-base64", "port-0", "no-port", "http-500"],
)
def test_malformed_signature_reply_leaves_the_previous_files_untouched(
    pia_sim: PiaSimulator, tmp_path: Path, reply: object
) -> None:
    """A new-port request answered with junk: clear error, old port stays in both files."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        pia_sim.gateways[0].fail_next(reply)  # type: ignore[arg-type]
        daemon.engine.command(Command.NEW_PORT, source="test")
        advance(daemon.engine, traveller, 0.5)
        assert Status.ERROR == daemon.engine.snapshot.status
        assert daemon.engine.snapshot.last_error
        assert daemon.port_file.read_text() == f"{port}\n"
        assert port == daemon.data()["port"]
        daemon.engine.close()


def test_port_zero_from_pia_is_never_written(pia_sim: PiaSimulator, tmp_path: Path) -> None:
    """getSignature with port 0 on the very first start: no file is written at all."""
    bad = payload_reply({"token": "t", "port": 0, "expires_at": "2030-01-01T00:00:00Z"})
    pia_sim.gateways[0].fail_next(bad)
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        assert Status.ERROR == daemon.engine.snapshot.status
        assert not daemon.port_file.exists()
        assert not daemon.data_file.exists()
        assert all(s.port is None for s in daemon.recorder.snapshots)
        daemon.engine.close()


def test_refresh_command_binds_now_and_new_port_command_gets_another_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """The MQTT buttons: refresh -> one extra bindPort; new_port -> new signature and port."""
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        first = daemon.engine.snapshot.port
        daemon.engine.command(Command.REFRESH, source="test")
        advance(daemon.engine, traveller, 0.1)
        binds_after_refresh = pia_sim.gateways[0].stats().binds_ok
        daemon.engine.command(Command.NEW_PORT, source="test")
        advance(daemon.engine, traveller, 0.1)
        stats = pia_sim.gateways[0].stats()
        assert 2 == binds_after_refresh
        assert 2 == len(stats.issued_ports)
        assert stats.issued_ports[1] == daemon.engine.snapshot.port
        assert first != daemon.engine.snapshot.port
        assert daemon.port_file.read_text() == f"{stats.issued_ports[1]}\n"
        daemon.engine.close()


def test_unwritable_config_folder_is_reported_and_the_keepalive_goes_on(
    pia_sim: PiaSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PORT_FILE in a folder that cannot exist: one clear error naming it; binds continue."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, port_file=blocker / "pia-port.txt", interval=900)
        daemon.engine.start()
        advance(daemon.engine, traveller, 3 * 900 + 1)
        errors = [r for r in caplog.records if "not-a-folder" in r.getMessage()]
        assert 4 == pia_sim.gateways[0].stats().binds_ok
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert 1 == len(errors)
        daemon.engine.close()


def test_a_sink_that_raises_does_not_stop_the_keepalive_or_the_other_sinks(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A failing sink is logged; files are still written and binds continue."""

    class Broken:
        name = "broken"
        check_interval = None

        def publish(self, snapshot: object) -> None:
            from pia_mqtt.errors import OutputError

            raise OutputError("broken sink")

        def event(self, event: object) -> None:
            pass

        def check(self, snapshot: object) -> None:
            pass

        def close(self) -> None:
            pass

    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path, extra_sinks=[Broken()])  # type: ignore[list-item]
        daemon.engine.start()
        advance(daemon.engine, traveller, 1801)
        assert 3 == pia_sim.gateways[0].stats().binds_ok
        assert daemon.port_file.exists()
        daemon.engine.close()


def test_a_sink_report_that_only_moves_last_sync_does_not_republish(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """Minute-by-minute 'still in sync' reports do not rewrite files or MQTT state.

    The newer time is kept and goes out with the next real change.
    """
    from pia_mqtt.core.model import SinkHealth, SyncState

    with at(utc_now()) as traveller:
        daemon = build_daemon(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        first = SinkHealth(SyncState.IN_SYNC, port=1234, last_sync=utc_now())
        daemon.engine.report("qbittorrent", first)
        advance(daemon.engine, traveller, 60)
        published = len(daemon.recorder.snapshots)
        later = SinkHealth(SyncState.IN_SYNC, port=1234, last_sync=utc_now())
        daemon.engine.report("qbittorrent", later)
        advance(daemon.engine, traveller, 1)
        after_same = len(daemon.recorder.snapshots)
        daemon.engine.command(Command.REFRESH, source="test")
        advance(daemon.engine, traveller, 1)
        assert published == after_same
        assert later == daemon.recorder.snapshots[-1].sinks["qbittorrent"]
        assert later.last_sync != first.last_sync
        daemon.engine.close()

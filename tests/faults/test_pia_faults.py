"""PIA faults on a fake clock: token endpoint, gateway, bindPort refusals, expiry, TLS.

Real HTTPS simulator, real PiaClient, GatewayFinder, LeaseStore and files; only time is
fake. Cases already in tests/test_engine.py are not repeated here (docs/reliability.md
names them): wrong credentials, refused keep-alives (409/401/401), gateway down with the
60 s backoff cap, malformed signature replies, port 0.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import EventKind, Status
from pia_mqtt.pia.retry import MAX_BACKOFF
from pia_mqtt.simulator.pia import (
    BAD_JSON,
    BAD_SIGNATURE,
    HTML_PAGE,
    SERVER_ERROR,
    PiaSimulator,
    Reply,
)
from tests.faults.conftest import build
from tests.harness import Daemon, advance, at

MINUTE = 60


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the simulator's token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


def _errors(daemon: Daemon) -> list[str]:
    return [e.message for e in daemon.recorder.events if e.kind is EventKind.ERROR]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (SERVER_ERROR, "HTTP 500"),
        (HTML_PAGE, "not JSON"),
        (BAD_JSON, "not JSON"),
        (Reply(503, "busy"), "HTTP 503"),
        (Reply(429, "{}"), "HTTP 429"),
    ],
    ids=["500", "html", "bad-json", "503", "429"],
)
def test_token_endpoint_fault_at_start_is_retried_until_a_port_is_bound(
    pia_sim: PiaSimulator, tmp_path: Path, fault: Reply, says: str
) -> None:
    """Token endpoint answering junk three times.

    status error with the cause, retries at 2, 4, 8 s, then the port is bound and written (status
    active, error cleared).
    """
    pia_sim.token_endpoint.fail_next(fault, times=3)
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        during = (daemon.engine.snapshot.status, daemon.port_file.exists())
        advance(daemon.engine, traveller, 2 + 4 + 8)
        port = pia_sim.gateways[0].stats().issued_ports[0]
        retries = [e.data["retry_in"] for e in daemon.recorder.events if e.kind is EventKind.ERROR]
        assert (Status.ERROR, False) == during
        assert [2.0, 4.0, 8.0] == retries
        assert all(says in m for m in _errors(daemon)), _errors(daemon)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert daemon.engine.snapshot.last_error is None
        assert (port, "active", None) == (
            daemon.data()["port"],
            daemon.data()["status"],
            daemon.data()["last_error"],
        )
        daemon.engine.close()


def test_token_endpoint_timeout_is_an_error_then_recovers(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A token endpoint that does not answer within the timeout.

    error naming the timeout, retry 2 s later, then active.
    """
    pia_sim.token_endpoint.delay_next(1.5)
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path, timeout=0.3)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        first = daemon.engine.snapshot
        advance(daemon.engine, traveller, 2)
        assert Status.ERROR == first.status
        assert "no answer within 0.3 s" in (first.last_error or ""), first.last_error
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert pia_sim.gateways[0].stats().issued_ports[0] == daemon.data()["port"]
        daemon.engine.close()


def test_gateway_timing_out_on_a_keepalive_keeps_the_same_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """bindPort not answered in time.

    status error, retry after 2 s on the same signature (no getSignature), status active again with
    the same port.
    """
    gateway = pia_sim.gateways[0]
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path, timeout=0.3)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        gateway.delay_next(1.5)
        advance(daemon.engine, traveller, 900)
        during = daemon.engine.snapshot
        advance(daemon.engine, traveller, 3)
        stats = gateway.stats()
        assert Status.ERROR == during.status
        assert "no answer within 0.3 s" in (during.last_error or ""), during.last_error
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert (1, port) == (stats.signature_requests, daemon.engine.snapshot.port)
        assert f"{port}\n" == daemon.port_file.read_text()
        daemon.engine.close()


def test_bindport_server_error_is_retried_on_the_same_signature(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """bindPort 500 is PIA's trouble, not a refusal: same signature, same port, no new one."""
    gateway = pia_sim.gateways[0]
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        gateway.fail_next(SERVER_ERROR, times=2)
        advance(daemon.engine, traveller, 900 + 2 + 4)
        stats = gateway.stats()
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert (1, port) == (stats.signature_requests, daemon.engine.snapshot.port)
        # With the default 900 s interval, 15 minutes without a bind have passed by the
        # first retry: PIA may have dropped the port, and the user is told (`lost`).
        assert [
            EventKind.PORT_CHANGED,
            EventKind.ERROR,
            EventKind.ERROR,
            EventKind.LOST,
            EventKind.BOUND,
        ] == daemon.recorder.kinds()
        daemon.engine.close()


def test_gateway_with_a_certificate_from_another_ca_is_refused_never_bound(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """A gateway address taken over by a server of another CA is refused, never bound.

    The gateway's address taken over by a server whose certificate chains to another CA (same
    name): no request reaches it, status error saying certificate, the files keep the last port;
    when the real gateway is back the same port is bound again.
    """
    gateway = pia_sim.gateways[0]
    rogue_dir = tmp_path / "rogue"
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        gateway.stop()
        with PiaSimulator(rogue_dir) as rogue_sim:
            rogue = rogue_sim.add_gateway(port=gateway.port, cn=gateway.cn)
            advance(daemon.engine, traveller, 900 + 10 * MINUTE)
            seen = rogue.stats()
            during = daemon.engine.snapshot
            data = daemon.data()
            rogue.stop()
        gateway.start()
        advance(daemon.engine, traveller, MAX_BACKOFF + 1)
        assert (0, 0, 0) == (seen.signature_requests, seen.binds_ok, seen.binds_failed)
        assert seen.connections > 0  # it was contacted, and refused at the handshake
        assert Status.ERROR == during.status
        assert "certificate" in (during.last_error or "").lower(), during.last_error
        assert (port, "error") == (data["port"], data["status"])
        assert Status.ACTIVE == daemon.engine.snapshot.status
        assert (port, 1) == (daemon.engine.snapshot.port, gateway.stats().signature_requests)
        daemon.engine.close()


def test_saved_signature_refused_at_start_gets_one_new_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """Restart with a saved lease that the gateway refuses (bad signature).

    one new signature, a bind_failed event saying so, the new port in the files and state file.
    """
    with at(utc_now()) as traveller:
        first = build(pia_sim, tmp_path)
        first.engine.start()
        advance(first.engine, traveller, 1)
        old = first.engine.snapshot.port
        first.engine.close()
        pia_sim.gateways[0].fail_next(BAD_SIGNATURE)
        second = build(pia_sim, tmp_path)
        second.engine.start()
        advance(second.engine, traveller, 1)
        stats = pia_sim.gateways[0].stats()
        new = stats.issued_ports[1]
        assert 2 == stats.signature_requests
        assert (Status.ACTIVE, new) == (second.engine.snapshot.status, second.engine.snapshot.port)
        assert [EventKind.BIND_FAILED, EventKind.PORT_CHANGED] == second.recorder.kinds()
        assert "Saved signature refused" in second.recorder.events[0].message
        assert f"{new}\n" == second.port_file.read_text()
        assert new == json.loads(second.state_file.read_text())["port"]
        assert old != new
        second.engine.close()


def test_signature_pia_considers_expired_is_replaced(pia_sim: PiaSimulator, tmp_path: Path) -> None:
    """A keep-alive PIA refuses as expired gets a new signature; status active.

    PIA's clock runs 59 days ahead of ours (our lease looks fresh, PIA says expired).
    """
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        old = daemon.engine.snapshot.port
        pia_sim.clock = lambda: utc_now() + timedelta(days=59, hours=23, minutes=59)
        advance(daemon.engine, traveller, 900)
        new = pia_sim.gateways[0].stats().issued_ports[1]
        failed = [e for e in daemon.recorder.events if e.kind is EventKind.BIND_FAILED]
        assert ["expired"] == [e.data["reason"] for e in failed]
        assert (Status.ACTIVE, new) == (daemon.engine.snapshot.status, daemon.engine.snapshot.port)
        assert f"{new}\n" == daemon.port_file.read_text()
        assert old != new
        daemon.engine.close()


def test_gateway_down_for_30_minutes_reports_lost_once_then_binds_the_same_port(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """What a user sees through a 30-minute outage.

    status error with the cause in the data file (old port kept), one `lost` event after 15 minutes
    without a bind, no retry wait above 60 s, then `bound` on the same port and status active.
    """
    gateway = pia_sim.gateways[0]
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        port = daemon.engine.snapshot.port
        gateway.stop()
        advance(daemon.engine, traveller, 900 + 30 * MINUTE)
        during = daemon.data()
        gateway.start()
        advance(daemon.engine, traveller, MAX_BACKOFF + 1)
        kinds = daemon.recorder.kinds()
        retries = [e.data["retry_in"] for e in daemon.recorder.events if e.kind is EventKind.ERROR]
        assert (port, "error") == (during["port"], during["status"])
        assert during["last_error"]
        assert 1 == kinds.count(EventKind.LOST)
        assert max(retries) == MAX_BACKOFF
        assert EventKind.BOUND == kinds[-1]
        assert (Status.ACTIVE, port) == (
            daemon.engine.snapshot.status,
            daemon.engine.snapshot.port,
        )
        assert (port, "active") == (daemon.data()["port"], daemon.data()["status"])
        assert 1 == gateway.stats().signature_requests
        daemon.engine.close()

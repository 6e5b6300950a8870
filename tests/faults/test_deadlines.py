"""Peers that drip their replies or send too much: one deadline per request, 64 KiB at most.

Each outside request (PIA's token endpoint, getSignature, bindPort; gluetun; qBittorrent)
has one deadline for connect + TLS + the whole reply, and a reply over 64 KiB is refused.
The peers here are real sockets on 127.0.0.1 (tests/drip.py) sending one byte every 0.2 s:
every single read is quick, so a per-read timeout never fires. Clients are built with a
1 s deadline (the real ones are 15 s for PIA, 10 s for gluetun and qBittorrent).
"""

from __future__ import annotations

import signal
import ssl
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import GatewayTarget, Status
from pia_mqtt.errors import PiaError, PiaUnavailableError, QbittorrentUnavailableError
from pia_mqtt.gluetun.client import GluetunClient, GluetunReplyError, GluetunUnavailableError
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import Lease
from pia_mqtt.simulator.certs import leaf_context
from pia_mqtt.simulator.pia import PiaSimulator
from pia_mqtt.torrent.qbittorrent import QbittorrentClient
from tests.drip import DripServer
from tests.faults.conftest import Daemon, build, config_dir, daemon_env, start_daemon
from tests.fixtures.common import eventually
from tests.fixtures.pia import SIM_PASS, SIM_USER
from tests.harness import advance, at, build_daemon

GATEWAY_NAME = "sim-gateway-1"
DEADLINE = 1.0
# The deadline plus scheduling slack; a per-read timeout would run for the drip's 8 s.
WITHIN = 2.5


def _gateway_ctx(sim: PiaSimulator) -> ssl.SSLContext:
    names: list[x509.GeneralName] = [x509.DNSName(GATEWAY_NAME)]
    return leaf_context(sim.material, token=False, cn=GATEWAY_NAME, names=names, stem="drip-gw")


def _token_ctx(sim: PiaSimulator) -> ssl.SSLContext:
    import ipaddress

    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return leaf_context(sim.material, token=True, cn="127.0.0.1", names=names, stem="drip-tok")


def _pia(sim: PiaSimulator, *, token_url: str, port: int) -> PiaClient:
    return PiaClient(
        username=SIM_USER,
        password=SIM_PASS,
        token_url=token_url,
        ca_file=sim.ca_file,
        gateway_port=port,
        timeout=DEADLINE,
    )


def _lease() -> Lease:
    now = utc_now()
    return Lease(
        port=40000,
        payload="cGF5bG9hZA==",
        signature="c2lnbmF0dXJl",
        expires_at=now + timedelta(days=30),
        raw='{"status": "OK"}',
    )


PIA_CALLS: dict[str, Callable[[PiaClient], object]] = {
    "token": lambda client: client.get_token(),
    "getSignature": lambda client: client.get_signature(
        GatewayTarget(address="127.0.0.1", hostname=GATEWAY_NAME), "a-token-value"
    ),
    "bindPort": lambda client: client.bind(
        GatewayTarget(address="127.0.0.1", hostname=GATEWAY_NAME), _lease()
    ),
}


def _pia_server(sim: PiaSimulator, call: str, mode: str) -> DripServer:
    ctx = _token_ctx(sim) if call == "token" else _gateway_ctx(sim)
    return DripServer(mode, ctx=ctx)


def _pia_client(sim: PiaSimulator, call: str, server: DripServer) -> PiaClient:
    if call == "token":
        return _pia(sim, token_url=f"{server.url}/api/client/v2/token", port=1)
    return _pia(sim, token_url=sim.token_url, port=server.port)


@pytest.fixture(autouse=True)
def _trust_token_ca(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies the (dripping) token endpoint through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))


@pytest.mark.parametrize("mode", ["headers", "body"])
@pytest.mark.parametrize("call", list(PIA_CALLS))
def test_pia_request_dripping_its_reply_fails_at_the_deadline(
    pia_sim: PiaSimulator, call: str, mode: str
) -> None:
    """A PIA endpoint dripping its headers or body over verified TLS.

    A transient error naming the deadline, raised within it (not after the drip's 8 s).
    """
    with _pia_server(pia_sim, call, mode) as server:
        client = _pia_client(pia_sim, call, server)
        started = time.monotonic()
        with pytest.raises(PiaUnavailableError, match=r"no answer within 1 s"):
            PIA_CALLS[call](client)
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < WITHIN


@pytest.mark.parametrize("call", list(PIA_CALLS))
def test_pia_reply_over_64_kib_is_refused(pia_sim: PiaSimulator, call: str) -> None:
    """A 70,000-byte reply from a PIA endpoint is refused with a message saying so."""
    with _pia_server(pia_sim, call, "large") as server:
        client = _pia_client(pia_sim, call, server)
        with pytest.raises(PiaError, match="larger than 64 KiB"):
            PIA_CALLS[call](client)
        client.close()


def test_keepalive_bind_missing_its_deadline_leaves_active(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """The gateway starts dripping its bindPort replies.

    The state leaves `active` for `error` naming the deadline, within about the deadline.
    """
    gateway = pia_sim.gateways[0]
    with at(utc_now()) as traveller:
        daemon = build(pia_sim, tmp_path, timeout=DEADLINE)
        daemon.engine.start()
        advance(daemon.engine, traveller, 1)
        assert Status.ACTIVE == daemon.engine.snapshot.status
        ctx = _gateway_ctx(pia_sim)
        gateway.stop()
        with DripServer("body", ctx=ctx, port=gateway.port) as server:
            started = time.monotonic()
            advance(daemon.engine, traveller, 900)
            elapsed = time.monotonic() - started
            during = daemon.engine.snapshot
            assert server.requests >= 1
        daemon.engine.close()
    assert Status.ERROR == during.status
    assert "no answer within 1 s" in (during.last_error or ""), during.last_error
    assert elapsed < WITHIN


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_gluetun_dripping_its_reply_fails_at_the_deadline(mode: str) -> None:
    """gluetun's control server dripping a reply: unavailable within the deadline."""
    with DripServer(mode) as server:
        client = GluetunClient(server.url, api_key=None, timeout=DEADLINE)
        started = time.monotonic()
        with pytest.raises(GluetunUnavailableError, match="no complete reply within 1 s"):
            client.forwarded_ports()
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < WITHIN


def test_gluetun_reply_over_64_kib_is_refused() -> None:
    """A 70,000-byte reply from gluetun is refused, naming GLUETUN_CONTROL_URL."""
    with DripServer("large") as server:
        client = GluetunClient(server.url, api_key=None, timeout=5.0)
        with pytest.raises(GluetunReplyError, match=r"larger than 64 KiB.*GLUETUN_CONTROL_URL"):
            client.forwarded_ports()
        client.close()


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_qbittorrent_dripping_its_reply_fails_at_the_deadline(mode: str) -> None:
    """qBittorrent's Web UI dripping a reply: unavailable within the deadline."""
    with DripServer(mode) as server:
        client = QbittorrentClient(server.url, username="admin", password="pw", timeout=DEADLINE)
        started = time.monotonic()
        with pytest.raises(QbittorrentUnavailableError, match="did not answer within 1 s"):
            client.listen_port()
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < WITHIN


def test_qbittorrent_reply_over_64_kib_is_refused() -> None:
    """A 70,000-byte reply from qBittorrent is refused, naming QBITTORRENT_HOST."""
    with DripServer("large") as server:
        client = QbittorrentClient(server.url, username="admin", password="pw", timeout=5.0)
        with pytest.raises(QbittorrentUnavailableError, match=r"larger than 64 KiB.*QBITTORRENT"):
            client.listen_port()
        client.close()


def test_sigterm_ends_the_process_within_2_s_while_a_request_hangs(
    pia_sim: PiaSimulator, shared_dir: Path, daemons: list[Daemon]
) -> None:
    """`pia-mqtt run` whose getSignature is dripping: SIGTERM still exits within 2 s."""
    config = config_dir(shared_dir, owner=None)
    with DripServer("body", ctx=_gateway_ctx(pia_sim), limit=60.0) as server:
        env = daemon_env(
            pia_sim,
            shared_dir,
            config,
            PIA_GATEWAY_PORT=str(server.port),
            PIA_HOSTNAME=GATEWAY_NAME,
        )
        daemon = start_daemon(env, shared_dir / "daemon.log", user=None)
        daemons.append(daemon)
        eventually(lambda: daemon.running() and server.requests >= 1, timeout=30)
        time.sleep(0.5)  # well inside the request, before its deadline (15 s)
        started = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - started
    assert 0 == code, daemon.log()
    assert elapsed < 2.0, daemon.log()


def test_once_ends_within_its_limit_while_the_gateway_drips(
    pia_sim: PiaSimulator, tmp_path: Path
) -> None:
    """`once` (run_once) with a dripping getSignature.

    It returns with the error within its own limit plus at most one request deadline.
    """
    from pia_mqtt.wiring import run_once

    gateway = pia_sim.gateways[0]
    ctx = _gateway_ctx(pia_sim)
    gateway.stop()
    with DripServer("body", ctx=ctx, port=gateway.port) as server:
        # Real time throughout: `once` plans its jobs on the real monotonic clock.
        daemon = build_daemon(
            pia_sim, tmp_path, timeout=DEADLINE, watch_interval=3600, monotonic=time.monotonic
        )
        started = time.monotonic()
        ok = run_once(daemon.engine, timeout=2.0)
        elapsed = time.monotonic() - started
        assert server.requests >= 1, daemon.engine.snapshot
    assert (False, Status.ERROR) == (ok, daemon.engine.snapshot.status)
    assert "no answer within 1 s" in (daemon.engine.snapshot.last_error or "")
    assert elapsed < 2.0 + DEADLINE + 1.0


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_transmission_and_deluge_posts_dripping_fail_at_the_deadline(mode: str) -> None:
    """torrent/http.post (Transmission, Deluge) with a dripping reply: within the deadline."""
    from pia_mqtt.errors import TorrentUnavailableError
    from pia_mqtt.torrent.http import Target, post

    with DripServer(mode) as server, requests.Session() as session:
        target = Target("Transmission", f"{server.url}/transmission/rpc", "check TRANSMISSION_URL")
        started = time.monotonic()
        with pytest.raises(TorrentUnavailableError, match="did not answer within 1 s"):
            post(session, target, "reading the peer port", deadline=DEADLINE)
        elapsed = time.monotonic() - started
    assert elapsed < WITHIN

"""Transmission's RPC client against real daemons: protocols, the session id, refusals.

The sink contract (set, drift, latch, down at start) is in tests/test_torrent_peers.py.
The fixture's password has a colon and a non-ASCII letter: Basic auth must send UTF-8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pia_mqtt.errors import TorrentAuthError, TorrentBannedError, TorrentUnavailableError
from pia_mqtt.torrent.transmission import TransmissionClient, rpc_url
from tests.fixtures.transmission import PASSWORD, USER, VERSIONS

if TYPE_CHECKING:
    from tests.fixtures.transmission import TransmissionFactory, TransmissionPeer

pytestmark = pytest.mark.netns


def client_for(peer: TransmissionPeer, *, password: str | None = PASSWORD) -> TransmissionClient:
    """Our client for ``peer`` with the fixture's user and ``password``."""
    return TransmissionClient(peer.url, username=USER, password=password)


def test_each_generation_gets_its_own_protocol(transmission: TransmissionPeer) -> None:
    """3.00 is spoken to in the legacy protocol, 4.1 in JSON-RPC 2.0; both set the port."""
    client = client_for(transmission)
    try:
        assert client.listen_port() == 51413
        assert client.set_listen_port(47111) == 47111
    finally:
        client.close()
    expected = {"3.00": False, "4.1": True}[transmission.version]
    assert (expected, 47111, False) == (
        client.jsonrpc,
        transmission.session()["peer-port"],
        transmission.session()["peer-port-random-on-start"],
    )


def test_a_new_session_id_after_a_restart_is_taken_and_the_call_resent(
    transmission: TransmissionPeer,
) -> None:
    """The restarted daemon answers 409 with a new id: one resend, no error, no login failure."""
    client = client_for(transmission)
    try:
        assert client.listen_port() == 51413
        transmission.restart(peer_port=47222)
        assert client.listen_port() == 47222
        assert client.failed_logins == 0
    finally:
        client.close()
    assert transmission.failed_logins() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_not_whitelisted_is_explained_and_is_not_a_login_failure(
    version: str, transmission_factory: TransmissionFactory
) -> None:
    """403 from rpc-whitelist names the setting; it is transient, not an auth error."""
    peer = transmission_factory(version, whitelist="127.0.0.1")
    client = client_for(peer)
    try:
        with pytest.raises(TorrentUnavailableError, match="rpc-whitelist") as caught:
            client.listen_port()
    finally:
        client.close()
    assert "403" in str(caught.value)
    assert not isinstance(caught.value, TorrentAuthError)
    assert client.failed_logins == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_host_name_without_auth_is_explained(
    version: str, transmission_factory: TransmissionFactory
) -> None:
    """421 (DNS-rebinding check, auth off) names rpc-host-whitelist and TRANSMISSION_URL."""
    peer = transmission_factory(version, **{"rpc-authentication-required": False})
    client = TransmissionClient(peer.url, username=None, password=None)
    # A name in the Host header as a Docker network gives it, without resolving one here.
    client._session.headers["Host"] = "transmission"
    try:
        with pytest.raises(TorrentUnavailableError, match="421") as caught:
            client.listen_port()
    finally:
        client.close()
    assert "rpc-host-whitelist" in str(caught.value)
    assert "TRANSMISSION_URL" in str(caught.value)


def test_login_required_but_no_credentials_set_names_both_variables(
    transmission_factory: TransmissionFactory,
) -> None:
    """Without TRANSMISSION_USER/PASS a 401 says they are not set (and counts as refused)."""
    peer = transmission_factory("3.00")
    client = TransmissionClient(peer.url, username=None, password=None)
    try:
        with pytest.raises(TorrentAuthError, match="are not set") as caught:
            client.listen_port()
    finally:
        client.close()
    assert "TRANSMISSION_USER" in str(caught.value)
    assert "TRANSMISSION_PASS" in str(caught.value)
    assert (client.failed_logins, peer.failed_logins()) == (1, 1)


def test_transmission_300_lock_after_100_failures_is_a_ban(
    transmission_factory: TransmissionFactory,
) -> None:
    """3.00 locks its RPC for everyone after 100 refused requests: a ban, restart to clear."""
    peer = transmission_factory("3.00")
    wrong = client_for(peer, password="wrong")
    try:
        for _ in range(100):
            with pytest.raises(TorrentAuthError):
                wrong.listen_port()
    finally:
        wrong.close()
    client = client_for(peer)
    try:
        with pytest.raises(TorrentBannedError, match="restart"):
            client.listen_port()
    finally:
        client.close()


def test_transmission_41_lock_is_a_403_that_mentions_the_lock(
    transmission_factory: TransmissionFactory,
) -> None:
    """4.1's brute-force lock is a bare 403: the message covers the whitelist and the lock."""
    peer = transmission_factory("4.1", **{"anti-brute-force-threshold": 3})
    wrong = client_for(peer, password="wrong")
    try:
        for _ in range(3):
            with pytest.raises(TorrentAuthError):
                wrong.listen_port()
    finally:
        wrong.close()
    client = client_for(peer)
    try:
        with pytest.raises(TorrentUnavailableError, match="403") as caught:
            client.listen_port()
    finally:
        client.close()
    assert "failed logins" in str(caught.value)
    assert "restart Transmission" in str(caught.value)


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_ports_outside_range_are_refused_before_any_request(port: int) -> None:
    """4.1 would store 70000 as 4464; nothing is sent for a port outside 1-65535."""
    client = TransmissionClient("http://127.0.0.1:9/transmission/rpc", username=None, password=None)
    with pytest.raises(ValueError, match="refusing"):
        client.set_listen_port(port)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://transmission:9091", "http://transmission:9091/transmission/rpc"),
        ("http://transmission:9091/", "http://transmission:9091/transmission/rpc"),
        ("http://t:9091/transmission/rpc", "http://t:9091/transmission/rpc"),
        ("http://t:9091/custom/rpc", "http://t:9091/custom/rpc"),
    ],
)
def test_a_url_without_a_path_gets_transmissions_default(given: str, used: str) -> None:
    """TRANSMISSION_URL may be given as the Web UI's address alone."""
    assert used == rpc_url(given)

"""GatewayFinder against real TLS servers on loopback (the simulator's gateways).

Loopback addresses are never detection candidates, so these tests reach the servers
through ``PIA_GATEWAY`` (``configured``); detection over routes and several candidates is
covered in network namespaces by tests/test_netns.py.
"""

from __future__ import annotations

import os
import socket
import struct
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import ConfigError, GatewayNotFoundError
from pia_mqtt.gateway import hops, sweep
from pia_mqtt.gateway import system as sysroutes
from pia_mqtt.gateway.finder import CandidateResult, GatewayFinder, format_results
from pia_mqtt.gateway.routes import Candidate, candidates
from pia_mqtt.gateway.tables import Address, Route
from pia_mqtt.pia.tls import PeerCert, ProbeResult, Verdict
from pia_mqtt.settings import Settings, load_settings

if TYPE_CHECKING:
    from pia_mqtt.simulator.pia import PiaSimulator

WIREGUARD = (
    [Route("0.0.0.0", 0, None, "wg0", table="51820"), Route("0.0.0.0", 0, "172.18.0.1", "eth0")],
    [Address("eth0", "172.18.0.2", 16), Address("wg0", "10.5.200.17", 32)],
)


def finder(
    address: str, port: int, ca_file: Path, *, hostname: str | None = None, **kw: float
) -> GatewayFinder:
    """Build a finder for a configured gateway; reading the system fails the test."""

    def no_system() -> tuple[list[Route], list[Address]]:
        raise AssertionError("a configured gateway must not read routes")

    return GatewayFinder(
        configured=address,
        hostname=hostname,
        port=port,
        ca_file=ca_file,
        read_system=no_system,
        **kw,
    )


def hints(port: int) -> list[str]:
    """List the troubleshooting lines every 'Could not detect gateway IP' error ends with."""
    return [
        "Common causes:",
        "  - VPN not connected yet: wait until the tunnel is up (it is retried automatically).",
        "  - Non-standard PIA gateway IP: set PIA_GATEWAY to the gateway's address.",
        (
            f"  - Firewall blocking port {port}: allow TCP to the gateway on that port"
            " (PIA_GATEWAY_PORT)."
        ),
    ]


def test_configured_gateway_is_verified_and_its_name_learned(pia_sim: PiaSimulator):
    """PIA_GATEWAY passes the TLS check against the PIA CA; the CN comes from the certificate."""
    gw = pia_sim.gateways[0]
    target = finder("127.0.0.1", gw.port, pia_sim.ca_file).find()
    assert GatewayTarget("127.0.0.1", "sim-gateway-1", "configured") == target


def test_name_is_learned_from_a_cn_only_certificate(pia_sim: PiaSimulator):
    """A certificate without subjectAltName still yields its CN as the gateway's name."""
    gw = pia_sim.add_gateway(cn="milano402", san=False)
    target = finder("127.0.0.1", gw.port, pia_sim.ca_file).find()
    assert GatewayTarget("127.0.0.1", "milano402", "configured") == target


def test_configured_hostname_is_kept_when_the_certificate_carries_it(pia_sim: PiaSimulator):
    """PIA_HOSTNAME is the user's choice: it is checked and returned as the name."""
    gw = pia_sim.add_gateway(cn="Server-11555-2a")
    target = finder("127.0.0.1", gw.port, pia_sim.ca_file, hostname="server-11555-2a").find()
    assert GatewayTarget("127.0.0.1", "server-11555-2a", "configured") == target


def test_wrong_hostname_is_not_a_gateway(pia_sim: PiaSimulator):
    """A certificate for another server fails with 'wrong name' and a PIA_HOSTNAME hint."""
    gw = pia_sim.gateways[0]
    with pytest.raises(GatewayNotFoundError) as caught:
        finder("127.0.0.1", gw.port, pia_sim.ca_file, hostname="milano402").find()
    expected = [
        (
            f"Could not detect gateway IP: no candidate answered on port {gw.port} with PIA's"
            " certificate (tried 127.0.0.1 wrong name)."
        ),
        "Addresses tried:",
        (
            "  127.0.0.1 (configured, PIA_GATEWAY): wrong name - certificate is for"
            " 'sim-gateway-1', expected 'milano402' (PIA_HOSTNAME)"
        ),
        *hints(gw.port),
        "  - The certificate name differs from PIA_HOSTNAME: fix or unset PIA_HOSTNAME.",
    ]
    assert expected == str(caught.value).splitlines()


def test_certificate_from_another_ca_is_not_a_gateway(pia_sim: PiaSimulator):
    """A server whose chain does not lead to the PIA CA is rejected, never trusted."""
    gw = pia_sim.gateways[0]
    results = finder("127.0.0.1", gw.port, pia_sim.token_ca_file).detect_all()
    assert [(Candidate("127.0.0.1", "configured", "PIA_GATEWAY"), Verdict.WRONG_CERTIFICATE)] == [
        (r.candidate, r.probe.verdict) for r in results
    ]
    with pytest.raises(GatewayNotFoundError, match="not issued by PIA's CA"):
        finder("127.0.0.1", gw.port, pia_sim.token_ca_file).find()


def test_refused_gateway_error_lists_the_address_and_the_hints(pia_sim: PiaSimulator):
    """A stopped gateway: the error names the address, the verdict and the seed's hints."""
    gw = pia_sim.gateways[0]
    gw.stop()
    with pytest.raises(GatewayNotFoundError) as caught:
        finder("127.0.0.1", gw.port, pia_sim.ca_file).find()
    expected = [
        (
            f"Could not detect gateway IP: no candidate answered on port {gw.port} with PIA's"
            " certificate (tried 127.0.0.1 refused)."
        ),
        "Addresses tried:",
        "  127.0.0.1 (configured, PIA_GATEWAY): refused - connection refused",
        *hints(gw.port),
    ]
    assert expected == str(caught.value).splitlines()


def test_silent_server_is_cut_off_by_the_detection_deadline(pia_ca_material: Path):
    """A port that accepts but never speaks TLS gets a timeout verdict at the deadline."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        results = finder(
            "127.0.0.1", port, pia_ca_material / "pia-ca.crt", probe_timeout=30, deadline=0.3
        ).detect_all()
    expected = [
        CandidateResult(
            Candidate("127.0.0.1", "configured", "PIA_GATEWAY"),
            ProbeResult(
                "127.0.0.1",
                port,
                Verdict.TIMEOUT,
                detail="no verdict within the 0.3 s detection deadline",
            ),
        )
    ]
    assert expected == results


def test_candidates_without_configuration_come_from_the_system():
    """Unconfigured, the finder lists what routes.candidates makes of the system's state."""
    found = GatewayFinder(
        configured=None,
        hostname=None,
        port=19999,
        ca_file=Path("/nonexistent"),
        read_system=lambda: WIREGUARD,
    ).candidates()
    assert candidates(*WIREGUARD, configured=None) == found
    expected = ["10.5.200.1", "10.5.128.1", "10.5.0.1", "172.18.0.1"]
    assert expected == [c.address for c in found]


def test_no_candidates_error_says_so():
    """With no routes and no addresses, the error says nothing was found, plus the hints."""
    empty = GatewayFinder(
        configured=None,
        hostname=None,
        port=19999,
        ca_file=Path("/nonexistent"),
        read_system=lambda: ([], []),
    )
    with pytest.raises(GatewayNotFoundError) as caught:
        empty.find()
    expected = [
        (
            "Could not detect gateway IP: no candidate answered on port 19999 with PIA's"
            " certificate (no candidates)."
        ),
        "No candidate found: no tunnel routes, tunnel interfaces, private hops or default route.",
        *hints(19999),
    ]
    assert expected == str(caught.value).splitlines()


def test_fingerprint_is_stable_and_follows_a_tunnel_change():
    """Same routes and addresses, same fingerprint; a new tunnel address changes it."""
    state = {"system": WIREGUARD}
    watch = GatewayFinder(
        configured=None,
        hostname=None,
        port=19999,
        ca_file=Path("/nonexistent"),
        read_system=lambda: state["system"],
    )
    first = watch.fingerprint()
    assert first == watch.fingerprint()
    state["system"] = (
        WIREGUARD[0],
        [Address("eth0", "172.18.0.2", 16), Address("wg0", "10.33.7.9", 32)],
    )
    moved = watch.fingerprint()
    assert first != moved
    state["system"] = WIREGUARD
    assert first == watch.fingerprint()


def test_format_results_prints_one_aligned_line_per_candidate():
    """detect-gateway output: address, source (detail), verdict; the CN when OK."""
    results = [
        CandidateResult(
            Candidate("10.19.110.1", "tunnel route", "0.0.0.0/1 dev tun0"),
            ProbeResult("10.19.110.1", 19999, Verdict.OK, cert=PeerCert("milano402", ())),
        ),
        CandidateResult(
            Candidate("10.19.0.1", "derived", "from 10.19.110.6"),
            ProbeResult("10.19.0.1", 19999, Verdict.TIMEOUT, detail="no answer in 2 s"),
        ),
        CandidateResult(
            Candidate("172.18.0.1", "default route", "default dev eth0"),
            ProbeResult("172.18.0.1", 19999, Verdict.REFUSED, detail="connection refused"),
        ),
    ]
    expected = (
        "10.19.110.1  tunnel route (0.0.0.0/1 dev tun0)  OK  CN=milano402\n"
        "10.19.0.1    derived (from 10.19.110.6)         timeout: no answer in 2 s\n"
        "172.18.0.1   default route (default dev eth0)   refused: connection refused"
    )
    assert expected == format_results(results)


def test_format_results_without_candidates():
    """An empty detection says so instead of printing nothing."""
    expected = (
        "no gateway candidates found (no tunnel routes, tunnel interfaces, private hops or default"
        " route)"
    )
    assert expected == format_results([])


def test_detect_all_reports_every_configured_probe_in_order(pia_sim: PiaSimulator):
    """detect_all returns the configured candidate with its verdict and certificate names."""
    gw = pia_sim.gateways[0]
    results = finder("127.0.0.1", gw.port, pia_sim.ca_file).detect_all()
    expected = [
        CandidateResult(
            Candidate("127.0.0.1", "configured", "PIA_GATEWAY"),
            ProbeResult(
                "127.0.0.1", gw.port, Verdict.OK, cert=PeerCert("sim-gateway-1", ("sim-gateway-1",))
            ),
        )
    ]
    assert expected == results


@pytest.mark.parametrize("ip", [None, "/bin/false"], ids=["ip missing", "ip without -j (busybox)"])
def test_without_a_working_ip_the_kernel_tables_are_read(monkeypatch, ip):
    """No iproute2, or an ``ip`` that fails: routes come from /proc/net/route (read only)."""
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sysroutes, "IP_PATHS", (ip,) if ip else ())
    assert sysroutes.read_proc_routes() == sysroutes.read_system_routes()


def _errqueue(origin: int, icmp_type: int, offender: str) -> list[tuple[int, int, bytes]]:
    """Build the ancillary data recvmsg(MSG_ERRQUEUE) returns: sock_extended_err + offender."""
    err = struct.pack("=IBBBBII", 113, origin, icmp_type, 0, 0, 0, 0)
    sin = struct.pack("=H2s4s", socket.AF_INET, b"\0\0", socket.inet_aton(offender)) + bytes(8)
    return [(hops.SOL_IP, hops.IP_RECVERR, err + sin)]


@pytest.mark.parametrize(
    ("ancdata", "port", "expected"),
    [
        (_errqueue(2, 11, "10.13.128.1"), hops.BASE_PORT + 2, hops.Hop(2, "10.13.128.1")),
        (
            _errqueue(2, 3, "198.18.0.100"),
            hops.BASE_PORT + 3,
            hops.Hop(3, "198.18.0.100", reached=True),
        ),
        (_errqueue(1, 11, "10.13.128.1"), hops.BASE_PORT + 2, None),  # local error, no ICMP
        (_errqueue(2, 11, "10.13.128.1"), 53, None),  # not one of our ports
        ([(hops.SOL_IP, 99, bytes(32))], hops.BASE_PORT + 1, None),  # another cmsg
        ([(hops.SOL_IP, hops.IP_RECVERR, bytes(8))], hops.BASE_PORT + 1, None),  # truncated
    ],
    ids=["time exceeded", "port unreachable", "local origin", "foreign port", "other", "short"],
)
def test_error_queue_messages_decode_to_the_hop_that_answered(ancdata, port, expected):
    """sock_extended_err and SO_EE_OFFENDER, parsed with struct as linux/errqueue.h lays them."""
    assert expected == hops.parse_error(ancdata, port)


def test_python_and_linux_agree_on_the_constants_the_hop_probe_defines():
    """IP_RECVERR and MSG_ERRQUEUE are linux/in.h's 11 and 0x2000 where socket has them."""
    assert (11, 0x2000) == (hops.IP_RECVERR, hops.MSG_ERRQUEUE)
    assert getattr(socket, "IP_RECVERR", 11) == hops.IP_RECVERR


def test_private_hops_and_their_derived_addresses_are_candidates_in_order():
    """10.x hops first (as traced), then x.y.128.1, x.y.0.1, x.y.z.1 of each.

    No duplicates, no public router, not the destination, nothing this host already knows.
    """
    traced = [
        hops.Hop(1, "192.168.50.1"),
        hops.Hop(2, "10.13.5.9"),
        hops.Hop(3, "10.13.128.1"),
        hops.Hop(4, "203.0.113.7"),
        hops.Hop(5, "10.99.0.1", reached=True),
    ]
    expected = [
        Candidate("10.13.5.9", "hop 2 (traceroute)"),
        Candidate("10.13.128.1", "hop 3 (traceroute)"),
        Candidate("10.13.5.1", "derived from hop 2"),
    ]
    assert expected == hops.hop_candidates(traced, own=frozenset({"10.13.0.1"}))


def test_sweep_lists_both_common_addresses_per_network_and_skips_our_own():
    """10.N.0.1 and 10.N.128.1 for each N; a network this host is on is skipped (a /32 is not)."""
    skip = [IPv4Network("10.11.0.0/16"), IPv4Network("10.12.0.7/32")]
    addresses, skipped = sweep.sweep_addresses(range(10, 13), skip=skip)
    assert (["10.10.0.1", "10.10.128.1", "10.12.0.1", "10.12.128.1"], 2) == (addresses, skipped)


def test_sweep_finds_the_open_ports_among_many_at_once():
    """Non-blocking connects: the listening address is found, closed ones are not (loopback)."""
    with socket.create_server(("127.0.0.3", 0)) as server:
        port = server.getsockname()[1]
        accepted = sweep.open_ports(["127.0.0.2", "127.0.0.3", "127.0.0.4"], port, batch=2)
    assert (["127.0.0.3"], False) == accepted


def test_sweep_report_is_one_line_naming_the_range_and_what_answered():
    """What detect-gateway and the not-found error print about a sweep."""
    report = sweep.SweepReport(12, 0, ("10.13.128.1",), 1.04)
    expected = (
        "sweep of 12 common PIA addresses (10.10-15.{0,128}.1, 0 skipped: this host's own "
        "networks) in 1.0 s: accepted TCP on 19999: 10.13.128.1"
    )
    assert expected == report.describe(19999, range(10, 16))


def test_hop_probe_toward_this_host_is_skipped_and_the_error_says_so(pia_ca_material: Path):
    """A token endpoint on loopback (tests, the demo) has no routers before it: no probe."""
    lonely = GatewayFinder(
        configured=None,
        hostname=None,
        port=19999,
        ca_file=pia_ca_material / "pia-ca.crt",
        read_system=lambda: ([], []),
        probe_target="127.0.0.1",
        trace=lambda target: pytest.fail(f"traced toward {target}"),
    )
    with pytest.raises(GatewayNotFoundError) as caught:
        lonely.find()
    assert "  Hop probe skipped: 127.0.0.1 is this host." in str(caught.value).splitlines()


def test_a_silent_better_candidate_holds_up_detection_only_for_the_grace(pia_sim: PiaSimulator):
    """The first verified answer wins once the grace is over, not when the silent one times out.

    127.0.0.2 accepts TCP on the gateway's port and never speaks TLS (like an old gateway
    after a VPN move); 127.0.0.1, ranked after it, is the simulator's gateway. The probe
    timeout and deadline are 30 s: only the grace can end the wait.
    """
    gw = pia_sim.gateways[0]
    ranked = [Candidate("127.0.0.2", "tunnel route"), Candidate("127.0.0.1", "default route")]
    with socket.create_server(("127.0.0.2", gw.port)):
        probing = GatewayFinder(
            configured=None,
            hostname=None,
            port=gw.port,
            ca_file=pia_sim.ca_file,
            probe_timeout=30,
            deadline=30,
            read_system=lambda: ([], []),
        )
        results = probing._probe_all(ranked, stop_at_first_ok=True)
    expected = [
        (Verdict.TIMEOUT, "not waited for: another candidate answered"),
        (Verdict.OK, ""),
    ]
    assert expected == [(r.probe.verdict, r.probe.detail) for r in results]


def test_saved_gateway_is_tried_alone_and_then_detection_runs(pia_sim: PiaSimulator):
    """A saved gateway that still verifies is the answer (source ``saved``).

    One that does not is listed first in the error with its source, then full detection.
    """
    gw = pia_sim.gateways[0]
    probing = GatewayFinder(
        configured=None,
        hostname=None,
        port=gw.port,
        ca_file=pia_sim.ca_file,
        read_system=lambda: ([], []),
    )
    found = probing.find(saved=GatewayTarget("127.0.0.1", "sim-gateway-1", "saved"))
    with pytest.raises(GatewayNotFoundError) as caught:
        probing.find(saved=GatewayTarget("127.0.0.1", "milano402", "saved"))
    assert GatewayTarget("127.0.0.1", "sim-gateway-1", "saved") == found
    line = "  127.0.0.1 (saved, certificate milano402): wrong name - certificate is for"
    assert str(caught.value).splitlines()[2].startswith(line), str(caught.value)


@pytest.mark.parametrize(
    ("env", "target", "octets"),
    [
        ({}, "www.privateinternetaccess.com", range(256)),
        (
            {"PIA_TOKEN_URL": "https://198.18.0.100:8443/api/client/v2/token"},
            "198.18.0.100",
            range(256),
        ),
        (
            {"GATEWAY_PROBE_TARGET": "198.18.0.7", "GATEWAY_SWEEP": "13-13"},
            "198.18.0.7",
            range(13, 14),
        ),
        ({"GATEWAY_SWEEP": "OFF"}, "www.privateinternetaccess.com", None),
    ],
    ids=["defaults", "token url host", "both set", "sweep off"],
)
def test_hop_probe_target_and_sweep_range_come_from_the_settings(env, target, octets):
    """GATEWAY_PROBE_TARGET defaults to PIA_TOKEN_URL's host; GATEWAY_SWEEP to every N."""
    settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
    assert (target, octets) == (settings.probe_target, settings.sweep_octets)


@pytest.mark.parametrize("value", ["20-10", "0-256", "300"])
def test_a_sweep_range_outside_0_255_is_a_configuration_error(monkeypatch, value):
    """A backwards or too wide GATEWAY_SWEEP is refused at start, naming the variable."""
    for key in list(os.environ):
        monkeypatch.delenv(key)
    monkeypatch.setenv("GATEWAY_SWEEP", value)
    with pytest.raises(ConfigError, match="GATEWAY_SWEEP: a range of N within 0-255"):
        load_settings(require_credentials=False)


def test_the_hop_probe_reads_the_destinations_answer_from_the_error_queue():
    """The real kernel path: an ICMP answer read with MSG_ERRQUEUE and SO_EE_OFFENDER.

    On loopback the first TTL already reaches the destination (port unreachable); nothing
    leaves the host.
    """
    found = hops.trace("127.0.0.1", max_hops=2, wait=2.0)
    assert hops.Hop(1, "127.0.0.1", reached=True) == found[0], found


def test_the_sweep_stops_at_its_deadline():
    """A sweep out of time reports that it was cut off rather than running on."""
    assert ([], True) == sweep.open_ports(["127.0.0.2"], 9, deadline=0)

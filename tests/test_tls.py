"""Gateway TLS: probe verdicts, the bundled PIA CA, and the simulator CA's PIA-like traps."""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509

from pia_mqtt.pia.tls import PeerCert, ProbeResult, Verdict, gateway_context, probe
from pia_mqtt.settings import bundled_pia_ca
from tests.fixtures.common import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pia_mqtt.simulator.pia import PiaSimulator

PIA_CA_SHA256 = (
    "1F:D2:56:58:45:6E:AB:30:41:FB:A7:7C:CD:39:8A:B8:"
    "12:4E:DC:C1:B8:B2:FC:1D:55:FD:F6:B1:BB:FC:9D:70"
)
BUNDLED = Path(__file__).resolve().parent.parent / "pia_mqtt" / "pia" / "pia-ca.rsa.4096.crt"


def test_probe_of_a_gateway_records_its_names(pia_sim: PiaSimulator) -> None:
    """A gateway with a PIA-signed certificate: verdict ok, CN and SAN recorded."""
    port = pia_sim.gateways[0].port
    expected = ProbeResult(
        "127.0.0.1", port, Verdict.OK, PeerCert("sim-gateway-1", ("sim-gateway-1",))
    )
    assert expected == probe("127.0.0.1", port, pia_sim.ca_file, timeout=2.0)


def test_probe_of_a_cn_only_certificate_is_ok_and_matches(pia_sim: PiaSimulator) -> None:
    """A certificate without subjectAltName: ok, and the expected name matches its CN."""
    port = pia_sim.add_gateway(cn="milano402", san=False).port
    expected = ProbeResult("127.0.0.1", port, Verdict.OK, PeerCert("milano402", ()))
    actual = probe("127.0.0.1", port, pia_sim.ca_file, timeout=2.0, hostname="milano402")
    assert expected == actual


def test_probe_of_a_closed_port_is_refused() -> None:
    """Nothing listening: verdict refused."""
    port = free_port()
    expected = ProbeResult("127.0.0.1", port, Verdict.REFUSED, detail="connection refused")
    assert expected == probe("127.0.0.1", port, bundled_pia_ca(), timeout=2.0)


def test_probe_of_a_server_from_another_ca_is_a_wrong_certificate(
    pia_sim: PiaSimulator,
) -> None:
    """The token endpoint's certificate does not chain to the PIA CA: wrong certificate."""
    port = pia_sim.token_endpoint.port
    expected = ProbeResult(
        "127.0.0.1",
        port,
        Verdict.WRONG_CERTIFICATE,
        detail="unable to get local issuer certificate",
    )
    assert expected == probe("127.0.0.1", port, pia_sim.ca_file, timeout=2.0)


def test_probe_with_the_real_pia_ca_rejects_the_simulator(pia_sim: PiaSimulator) -> None:
    """The bundled (real) PIA CA does not vouch for the simulator's gateway."""
    result = probe("127.0.0.1", pia_sim.gateways[0].port, bundled_pia_ca(), timeout=2.0)
    assert result.verdict == Verdict.WRONG_CERTIFICATE


def test_probe_for_another_name_is_a_wrong_name(pia_sim: PiaSimulator) -> None:
    """A PIA-signed certificate for another server: wrong name, names kept for the report."""
    port = pia_sim.gateways[0].port
    expected = ProbeResult(
        "127.0.0.1",
        port,
        Verdict.WRONG_NAME,
        PeerCert("sim-gateway-1", ("sim-gateway-1",)),
        detail="certificate is for 'sim-gateway-1', expected 'milano402' (PIA_HOSTNAME)",
    )
    actual = probe("127.0.0.1", port, pia_sim.ca_file, timeout=2.0, hostname="milano402")
    assert expected == actual


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Listen on a port that accepts TCP (kernel backlog) but never speaks TLS."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def test_probe_of_a_silent_server_times_out(silent_listener: int) -> None:
    """A handshake that never completes: verdict timeout."""
    expected = ProbeResult(
        "127.0.0.1", silent_listener, Verdict.TIMEOUT, detail="no answer in 0.2 s"
    )
    assert expected == probe("127.0.0.1", silent_listener, bundled_pia_ca(), timeout=0.2)


def test_bundled_pia_ca_is_pias_certificate() -> None:
    """The shipped CA is PIA's, by SHA-256 fingerprint, and settings point at it."""
    der = ssl.PEM_cert_to_DER_cert(BUNDLED.read_text(encoding="ascii"))
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert fingerprint == PIA_CA_SHA256
    assert bundled_pia_ca().resolve() == BUNDLED


def _trap_properties(path: Path) -> tuple[bool, bool, bool]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    has_key_usage = any(isinstance(e.value, x509.KeyUsage) for e in cert.extensions)
    return constraints.value.ca, constraints.critical, has_key_usage


def test_bundled_pia_ca_has_the_traps_the_simulator_mimics() -> None:
    """PIA's CA: CA:TRUE, basicConstraints not critical, no keyUsage (what strict rejects)."""
    assert _trap_properties(BUNDLED) == (True, False, False)


def test_simulator_ca_lacks_key_usage_and_critical_constraints(pia_sim: PiaSimulator) -> None:
    """The simulator's gateway CA mimics PIA's: CA:TRUE, not critical, no keyUsage."""
    assert _trap_properties(pia_sim.ca_file) == (True, False, False)


def _handshake(ctx: ssl.SSLContext, port: int) -> str:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2.0) as raw,
            ctx.wrap_socket(raw, server_hostname="sim-gateway-1"),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


def test_strict_verification_rejects_the_simulator_ca_and_ours_does_not(
    pia_sim: PiaSimulator,
) -> None:
    """VERIFY_X509_STRICT (Python 3.13's default) fails on the PIA-like CA; gateway_context works."""
    port = pia_sim.gateways[0].port
    strict = ssl.create_default_context(cafile=str(pia_sim.ca_file))
    strict.verify_flags |= ssl.VERIFY_X509_STRICT
    strict_failures = {
        "Basic Constraints of CA cert not marked critical",
        "CA cert does not include key usage extension",
    }
    assert _handshake(gateway_context(pia_sim.ca_file), port) == "ok"
    assert _handshake(strict, port) in strict_failures


def test_gateway_context_clears_only_the_strict_flag(pia_sim: PiaSimulator) -> None:
    """Compared with a default context on this Python, only VERIFY_X509_STRICT is gone."""
    default = ssl.create_default_context(cafile=str(pia_sim.ca_file))
    ours = gateway_context(pia_sim.ca_file)
    expected = default.verify_flags & ~ssl.VERIFY_X509_STRICT
    assert (expected, ssl.CERT_REQUIRED) == (ours.verify_flags, ours.verify_mode)

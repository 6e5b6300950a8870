"""TLS to PIA gateways: PIA's CA only, the name matched by us, and a cheap probe.

PIA's gateways present certificates issued by PIA's private CA whose name is the server's
common name (``milano402``), sometimes only in the subject CN. Two traps shape this module:

- Python 3.13 (and urllib3 >= 2.4 on it) sets ``VERIFY_X509_STRICT``, which rejects PIA's
  CA (basicConstraints not critical, no keyUsage). We clear that one flag, nothing else.
- urllib3 2.x never matches the CN. We verify the chain against PIA's CA, then match the
  expected name against the subjectAltName DNS names, or the CN when there is no SAN.

There is no way to turn verification off.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=8)
def gateway_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file``; the name is checked by the caller."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    strict = getattr(ssl, "VERIFY_X509_STRICT", 0)
    ctx.verify_flags &= ~strict
    # Hostname matching happens in :meth:`PeerCert.matches` / urllib3's assert_hostname,
    # after the chain has been verified (verify_mode stays CERT_REQUIRED).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass(frozen=True)
class PeerCert:
    """The names a verified gateway certificate carries."""

    common_name: str | None
    dns_names: tuple[str, ...]

    @classmethod
    def from_getpeercert(cls, cert: dict[str, Any]) -> PeerCert:
        """Build from :meth:`ssl.SSLSocket.getpeercert` output (a verified certificate)."""
        common_name = None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    common_name = value
        dns = tuple(value for key, value in cert.get("subjectAltName", ()) if key == "DNS")
        return cls(common_name=common_name, dns_names=dns)

    @property
    def server_name(self) -> str | None:
        """The name to pin for this gateway: the CN, else the first DNS name."""
        return self.common_name or (self.dns_names[0] if self.dns_names else None)

    def matches(self, hostname: str) -> bool:
        """RFC 6125 style: SAN DNS names when present, else the CN; exact, case-insensitive."""
        wanted = hostname.lower().rstrip(".")
        if self.dns_names:
            return any(name.lower().rstrip(".") == wanted for name in self.dns_names)
        return (self.common_name or "").lower() == wanted


class Verdict(StrEnum):
    """What a probe of a gateway candidate found."""

    OK = "ok"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    WRONG_CERTIFICATE = "wrong certificate"
    WRONG_NAME = "wrong name"
    TLS_ERROR = "tls error"


@dataclass(frozen=True)
class ProbeResult:
    """The verdict for one address, and the certificate's names when it verified."""

    address: str
    port: int
    verdict: Verdict
    cert: PeerCert | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the address completed a handshake that chains to PIA's CA."""
        return self.verdict is Verdict.OK


def probe(
    address: str,
    port: int,
    ca_file: Path,
    *,
    timeout: float = 2.0,
    hostname: str | None = None,
) -> ProbeResult:
    """Open a TLS connection, verify the chain against ``ca_file``, and report the names.

    Never raises for network or TLS failures: they become the verdict. When ``hostname``
    is given the certificate must also carry that name.
    """
    ctx = gateway_context(ca_file)
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            peer = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(address, port, Verdict.WRONG_CERTIFICATE, detail=exc.verify_message)
    except ssl.SSLError as exc:
        return ProbeResult(address, port, Verdict.TLS_ERROR, detail=exc.reason or str(exc))
    except TimeoutError:
        return ProbeResult(address, port, Verdict.TIMEOUT, detail=f"no answer in {timeout:g} s")
    except ConnectionRefusedError:
        return ProbeResult(address, port, Verdict.REFUSED, detail="connection refused")
    except OSError as exc:
        return ProbeResult(address, port, Verdict.UNREACHABLE, detail=exc.strerror or str(exc))
    cert = PeerCert.from_getpeercert(peer or {})
    if hostname is not None and not cert.matches(hostname):
        return ProbeResult(
            address,
            port,
            Verdict.WRONG_NAME,
            cert=cert,
            detail=f"certificate is for {cert.server_name!r}, expected {hostname!r} (PIA_HOSTNAME)",
        )
    if cert.server_name is None:
        return ProbeResult(
            address,
            port,
            Verdict.WRONG_CERTIFICATE,
            cert=cert,
            detail="certificate carries no name",
        )
    return ProbeResult(address, port, Verdict.OK, cert=cert)

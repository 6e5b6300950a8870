"""The TLS transport to a PIA gateway: one verified connection pool per gateway.

A gateway is reached by its IP and verified against PIA's CA only
(:func:`pia_mqtt.pia.tls.gateway_context`, never certifi, never unverified) and against its
server name, which may sit in the subjectAltName or only in the CN (urllib3 2.x would
ignore the CN, so the name is matched here with :meth:`pia_mqtt.pia.tls.PeerCert.matches`).
:class:`GatewayAdapter` mounts that pool into a requests session (used by
:class:`pia_mqtt.pia.client.PiaClient`).

Importing this module also puts a redacting filter on urllib3's request logger, whose
DEBUG lines carry the query string (token, payload, signature).
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from pia_mqtt import redact
from pia_mqtt.pia.tls import PeerCert, gateway_context

if TYPE_CHECKING:
    from pathlib import Path


class _RedactFilter(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string (token, signature) included."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact.redact(record.getMessage())
        record.args = None
        return True


def _install_log_filter() -> None:
    target = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactFilter) for f in target.filters):
        target.addFilter(_RedactFilter())


_install_log_filter()


class GatewayNameMismatch(ssl.SSLCertVerificationError):
    """The gateway's certificate chains to PIA's CA but carries another server name."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class _GatewayConnection(HTTPSConnection):
    """After urllib3's handshake (chain verified), match the name: SAN, else the CN."""

    def connect(self) -> None:
        super().connect()
        sock = self.sock
        peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        cert = PeerCert.from_getpeercert(dict(peer or {}))
        expected = self.server_hostname or ""
        if not cert.matches(expected):
            self.close()
            raise GatewayNameMismatch(
                f"the certificate is for {cert.server_name!r}, not {expected!r}"
            )


class _GatewayPool(HTTPSConnectionPool):
    ConnectionCls = _GatewayConnection


class GatewayAdapter(HTTPAdapter):
    """Sends every request of its session to one gateway over one verified pool."""

    def __init__(self, address: str, port: int, hostname: str, ca_file: Path) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)
        self._pool = _GatewayPool(
            address,
            port,
            maxsize=1,
            ssl_context=gateway_context(ca_file),
            server_hostname=hostname,
            # urllib3 would match SAN only; _GatewayConnection matches SAN or CN.
            assert_hostname=False,
            cert_reqs="CERT_REQUIRED",
        )

    def get_connection_with_tls_context(
        self,
        request: Any,  # noqa: ARG002
        verify: Any,  # noqa: ARG002
        proxies: Any = None,  # noqa: ARG002
        cert: Any = None,  # noqa: ARG002
    ) -> HTTPSConnectionPool:
        """The gateway's own pool: no proxies, no pool manager, no other trust store."""
        return self._pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:  # noqa: ARG002
        """Keep PIA's CA as the only trust: requests would load certifi or a bundle here."""
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()
        super().close()

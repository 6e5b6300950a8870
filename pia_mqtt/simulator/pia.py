"""A local PIA look-alike over real HTTPS, for the tests and ``pia-mqtt demo``.

Only the simulator package imports ``cryptography``;
the daemon never imports them. Everything below is importable from here.

API::

    sim = PiaSimulator(workdir, users={"p1234567": "sim-password"}, host="127.0.0.1",
                       token_port=0, signature_lifetime=timedelta(days=60), clock=None)
    with sim:                                  # start() ... stop()
        gw = sim.add_gateway(host="127.0.0.1", port=0, cn="sim-gateway-1",
                             san=True, accepts_foreign=True)      # started
        sim.token_url, sim.ca_file, sim.token_ca_file, sim.gateways, sim.token_endpoint
        gw.port, gw.cn, gw.stop(), gw.start()  # down (connection refused) / up, same port
        gw.stats() == GatewayStats(connections, signature_requests, binds_ok,
                                   binds_failed, issued_ports, bound_ports)
        gw.last_payload, gw.last_signature_reply   # as received / as sent
        gw.issue_signature(token, port=None, expires_at=None)  # a signed reply text
        gw.fail_next(BUSY, times=2); gw.delay_next(3.0)        # fault injection
        sim.token_endpoint.fail_next(WRONG_CREDENTIALS); sim.token_endpoint.stats()
    ensure_material(folder)                    # create (or reuse) the CAs and signing key

Canned replies: BUSY, BAD_SIGNATURE, UNAUTHORIZED_CLIENT, NO_AUTH_DATA, NOT_OK,
SERVER_ERROR, HTML_PAGE, BAD_JSON, WRONG_CREDENTIALS, and :func:`payload_reply` for a
signature whose payload is broken (bad base64, port 0, no port). An injected reply counts
as a failed request in the stats.

The gateway CA (``ca_file``) is built like PIA's: basicConstraints CA:TRUE not critical and
no keyUsage, which Python 3.13's VERIFY_X509_STRICT rejects. The token endpoint has its own
ordinary CA (``token_ca_file``, for REQUESTS_CA_BUNDLE). Tokens and signatures are HMACs
under a key kept with the CAs in the work folder, so every gateway (and every simulator
process sharing the folder) accepts them, as PIA's servers do; a gateway made with
``accepts_foreign=False`` accepts only the signatures it issued itself.

Standalone: ``python -m pia_mqtt.simulator`` (see :mod:`pia_mqtt.simulator.__main__`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Self

from pia_mqtt.simulator.certs import Material, ensure_material
from pia_mqtt.simulator.gateway import GatewayStats, SimGateway, pia_time
from pia_mqtt.simulator.server import (
    BAD_JSON,
    BAD_SIGNATURE,
    BUSY,
    HTML_PAGE,
    NO_AUTH_DATA,
    NOT_OK,
    SERVER_ERROR,
    UNAUTHORIZED_CLIENT,
    WRONG_CREDENTIALS,
    Reply,
    TokenEndpoint,
    TokenStats,
    payload_reply,
)

if TYPE_CHECKING:
    from types import TracebackType

# The public API stays importable from here, wherever it is defined.
__all__ = [
    "BAD_JSON",
    "BAD_SIGNATURE",
    "BUSY",
    "HTML_PAGE",
    "NOT_OK",
    "NO_AUTH_DATA",
    "SERVER_ERROR",
    "UNAUTHORIZED_CLIENT",
    "WRONG_CREDENTIALS",
    "Clock",
    "GatewayStats",
    "Material",
    "PiaSimulator",
    "Reply",
    "SimGateway",
    "TokenEndpoint",
    "TokenStats",
    "ensure_material",
    "payload_reply",
    "pia_time",
]

Clock = Callable[[], datetime]


class PiaSimulator:
    """A token endpoint and any number of gateways sharing one CA and signing key."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        token_port: int = 0,
        signature_lifetime: timedelta = timedelta(days=60),
        clock: Clock | None = None,
    ) -> None:
        self.material = ensure_material(workdir)
        self.users = dict(users) if users is not None else {"p1234567": "sim-password"}
        self.signature_lifetime = signature_lifetime
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.gateways: list[SimGateway] = []
        self.token_endpoint = TokenEndpoint(self, host, token_port)

    @property
    def ca_file(self) -> Path:
        """The PIA-like gateway CA (PIA_CA_CERT)."""
        return self.material.ca_file

    @property
    def token_ca_file(self) -> Path:
        """The token endpoint's CA (REQUESTS_CA_BUNDLE)."""
        return self.material.token_ca_file

    @property
    def token_url(self) -> str:
        """``https://<host>:<port>/api/client/v2/token`` (PIA_TOKEN_URL)."""
        ep = self.token_endpoint
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        return f"https://{host}:{ep.port}{TokenEndpoint.PATH}"

    def start(self) -> None:
        """Start the token endpoint (gateways start when added)."""
        self.token_endpoint.start()

    def stop(self) -> None:
        """Stop every server."""
        for gateway in self.gateways:
            gateway.stop()
        self.token_endpoint.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_gateway(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cn: str = "sim-gateway-1",
        san: bool = True,
        accepts_foreign: bool = True,
    ) -> SimGateway:
        """Start a gateway; ``san=False`` puts the name only in the subject CN."""
        gateway = SimGateway(
            self, host=host, port=port, cn=cn, san=san, accepts_foreign=accepts_foreign
        )
        gateway.start()
        self.gateways.append(gateway)
        return gateway

    def new_token(self) -> str:
        """Make a token any gateway of this key accepts: nonce + HMAC."""
        nonce = secrets.token_hex(16)
        return nonce + self._mac(b"token:" + nonce.encode()).hex()[:32]

    def valid_token(self, token: str) -> bool:
        """Whether ``token`` came from a token endpoint sharing this key."""
        nonce, mac = token[:32], token[32:]
        return len(token) == 64 and hmac.compare_digest(
            mac, self._mac(b"token:" + nonce.encode()).hex()[:32]
        )

    def sign(self, payload: str) -> str:
        """Sign a payload exactly as sent (byte for byte)."""
        return base64.b64encode(self._mac(b"sig:" + payload.encode())).decode()

    def verify(self, payload: str, signature: str) -> bool:
        """Whether ``signature`` signs ``payload`` under the shared key."""
        return hmac.compare_digest(signature.encode(), self.sign(payload).encode())

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self.material.signing_key, data, hashlib.sha256).digest()


# --- standalone --------------------------------------------------------------------------

"""A local PIA look-alike over real HTTPS, for the tests and ``pia-mqtt demo``.

Only the simulator modules (this one, ``simcerts``, ``simserver``) import ``cryptography``;
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

Standalone (network-namespace tests, the demo)::

    python -m pia_mqtt.simulator --dir D [--host H] [--token-port P] [--no-token]
        [--gateway HOST:PORT:CN[:nosan][:noforeign]]... [--users USER:PASS]...

prints one JSON line (token_url, ca_file, token_ca_file, gateways) when ready and serves
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from cryptography import x509

from pia_mqtt.simcerts import Material, ensure_material, leaf_context
from pia_mqtt.simserver import (
    BAD_JSON,
    BAD_SIGNATURE,
    BUSY,
    HTML_PAGE,
    NO_AUTH_DATA,
    NOT_OK,
    SERVER_ERROR,
    UNAUTHORIZED_CLIENT,
    WRONG_CREDENTIALS,
    Endpoint,
    Reply,
    TokenEndpoint,
    TokenStats,
    payload_reply,
)

if TYPE_CHECKING:
    from types import FrameType, TracebackType

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
    "main",
    "payload_reply",
    "pia_time",
]

Clock = Callable[[], datetime]


def pia_time(moment: datetime) -> str:
    """PIA's expires_at format: UTC, 9 fractional digits, ``Z``."""
    moment = moment.astimezone(UTC)
    nanos = f"{moment.microsecond:06d}{secrets.randbelow(1000):03d}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos}Z"


@dataclass(frozen=True)
class GatewayStats:
    """What one gateway saw: connections, requests, and every port issued and bound."""

    connections: int = 0
    signature_requests: int = 0
    binds_ok: int = 0
    binds_failed: int = 0
    issued_ports: tuple[int, ...] = ()
    bound_ports: tuple[int, ...] = ()


class SimGateway(Endpoint):
    """``/getSignature`` and ``/bindPort`` on a PIA-like certificate named ``cn``."""

    def __init__(
        self, sim: PiaSimulator, *, host: str, port: int, cn: str, san: bool, accepts_foreign: bool
    ) -> None:
        names: list[x509.GeneralName] = [x509.DNSName(cn)] if san else []
        ctx = leaf_context(sim.material, token=False, cn=cn, names=names, stem=f"gw-{id(self)}")
        super().__init__(host, port, ctx)
        self.cn = cn
        self.accepts_foreign = accepts_foreign
        self._sim = sim
        self._issued: set[str] = set()
        self._stats = GatewayStats()
        self.last_payload: str | None = None
        self.last_signature_reply: str | None = None

    def stats(self) -> GatewayStats:
        """Counters so far."""
        with self._lock:
            return self._stats

    def count_connection(self) -> None:
        """Count accepted TCP connections (keep-alive reuse shows as fewer)."""
        with self._lock:
            self._stats = replace(self._stats, connections=self._stats.connections + 1)

    def issue_signature(
        self, token: str, *, port: int | None = None, expires_at: str | None = None
    ) -> str:
        """Return a signed getSignature reply (text), as if this gateway had issued it."""
        port = port if port is not None else 10000 + secrets.randbelow(55001)
        expires = expires_at or pia_time(self._sim.clock() + self._sim.signature_lifetime)
        data = {"token": token, "port": port, "expires_at": expires}
        payload = base64.b64encode(json.dumps(data).encode()).decode()
        body = json.dumps(
            {"status": "OK", "payload": payload, "signature": self._sim.sign(payload)}
        )
        with self._lock:
            self._issued.add(payload)
            self.last_signature_reply = body
            self._stats = replace(self._stats, issued_ports=(*self._stats.issued_ports, port))
        return body

    def route(self, path: str, query: dict[str, str], fault: Reply | None) -> Reply:
        """GetSignature needs a token from the token endpoint; bindPort a valid signature."""
        if path == "/getSignature":
            with self._lock:
                self._stats = replace(
                    self._stats, signature_requests=self._stats.signature_requests + 1
                )
            if fault is not None:
                return fault
            token = query.get("token", "")
            if not token:
                return NO_AUTH_DATA
            if not self._sim.valid_token(token):
                return Reply(401, '{"status": "ERROR", "message": "invalid token"}')
            return Reply(200, self.issue_signature(token))
        if path == "/bindPort":
            reply = fault or self._bind(query.get("payload", ""), query.get("signature", ""))
            ok = reply.status == 200 and '"status": "OK"' in reply.body
            with self._lock:
                self.last_payload = query.get("payload")
                s = self._stats
                self._stats = replace(
                    s, binds_ok=s.binds_ok + ok, binds_failed=s.binds_failed + (not ok)
                )
            return reply
        return Reply(404, '{"message": "not found"}')

    def _bind(self, payload: str, signature: str) -> Reply:
        if not payload or not signature:
            return NO_AUTH_DATA
        with self._lock:
            issued_here = payload in self._issued
        if not self._sim.verify(payload, signature) or not (issued_here or self.accepts_foreign):
            return BAD_SIGNATURE
        try:
            data = json.loads(base64.b64decode(payload, validate=True))
            expires = datetime.fromisoformat(data["expires_at"][:26] + "+00:00")
            port = int(data["port"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return BAD_SIGNATURE
        if expires <= self._sim.clock():
            return Reply(401, '{"status": "ERROR", "message": "signature has expired"}')
        with self._lock:
            self._stats = replace(self._stats, bound_ports=(*self._stats.bound_ports, port))
        return Reply(200, '{"status": "OK", "message": "port scheduled for add"}')


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


def _gateway_spec(text: str) -> dict[str, Any]:
    host, rest = text.split("]:", 1) if text.startswith("[") else text.split(":", 1)
    port, cn, *flags = rest.split(":")
    unknown = set(flags) - {"nosan", "noforeign"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown gateway flag(s) {sorted(unknown)}")
    return {
        "host": host.lstrip("["),
        "port": int(port),
        "cn": cn,
        "san": "nosan" not in flags,
        "accepts_foreign": "noforeign" not in flags,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; print one JSON line when ready."""
    parser = argparse.ArgumentParser(prog="python -m pia_mqtt.simulator")
    parser.add_argument("--dir", type=Path, required=True, help="CA material and certs")
    parser.add_argument("--host", default="127.0.0.1", help="token endpoint address")
    parser.add_argument("--token-port", type=int, default=0)
    parser.add_argument("--no-token", action="store_true", help="serve no token endpoint")
    parser.add_argument(
        "--gateway",
        type=_gateway_spec,
        action="append",
        default=[],
        metavar="HOST:PORT:CN[:nosan][:noforeign]",
    )
    parser.add_argument("--users", action="append", default=[], metavar="USER:PASS")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.users) or None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = PiaSimulator(args.dir, users=users, host=args.host, token_port=args.token_port)
    try:
        if not args.no_token:
            sim.start()
        for spec in args.gateway:
            sim.add_gateway(**spec)
        ready = {
            "token_url": None if args.no_token else sim.token_url,
            "ca_file": str(sim.ca_file),
            "token_ca_file": str(sim.token_ca_file),
            "gateways": [{"host": g.host, "port": g.port, "cn": g.cn} for g in sim.gateways],
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

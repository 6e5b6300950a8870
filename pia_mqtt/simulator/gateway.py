"""One simulated PIA gateway: ``/getSignature`` and ``/bindPort`` on a PIA-like certificate."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509

from pia_mqtt.simulator.certs import leaf_context
from pia_mqtt.simulator.server import BAD_SIGNATURE, NO_AUTH_DATA, Endpoint, Reply

if TYPE_CHECKING:
    from pia_mqtt.simulator.pia import PiaSimulator


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

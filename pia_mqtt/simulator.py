"""A local PIA look-alike over real HTTPS, for the tests and ``pia-mqtt demo``.

Only this module imports ``cryptography``; the daemon never imports it.

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
import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import secrets
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from types import FrameType, TracebackType

Clock = Callable[[], datetime]
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_IO_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body and content type."""

    status: int
    body: str
    content_type: str = _JSON


BUSY = Reply(409, '{"message": "Port 51813 is busy. Please use another server"}')
BAD_SIGNATURE = Reply(401, '{"status": "", "message": "bad signature"}')
UNAUTHORIZED_CLIENT = Reply(401, '{"status": "ERROR", "message": "Unauthorized client"}')
NO_AUTH_DATA = Reply(401, '{"status": "ERROR", "message": "no auth data"}')
NOT_OK = Reply(200, '{"status": "ERROR", "message": "port forwarding is not available"}')
SERVER_ERROR = Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", _HTML)
HTML_PAGE = Reply(200, "<!DOCTYPE html><html><body><p>Captive portal</p></body></html>", _HTML)
BAD_JSON = Reply(200, '{"status": "OK", "payload": "eyJwb3J0Ijo')
WRONG_CREDENTIALS = Reply(401, '{"message": "Unauthorized"}')


def payload_reply(payload: dict[str, Any] | str, signature: str = "c2lnbmF0dXJl") -> Reply:
    """Build a status-OK getSignature reply carrying ``payload`` (a dict is base64'd JSON)."""
    if isinstance(payload, dict):
        payload = base64.b64encode(json.dumps(payload).encode()).decode()
    body = {"status": "OK", "payload": payload, "signature": signature}
    return Reply(200, json.dumps(body))


def pia_time(moment: datetime) -> str:
    """PIA's expires_at format: UTC, 9 fractional digits, ``Z``."""
    moment = moment.astimezone(UTC)
    nanos = f"{moment.microsecond:06d}{secrets.randbelow(1000):03d}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos}Z"


# --- certificate material -------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """The simulator's CAs (gateway and token endpoint) and the shared signing key."""

    folder: Path
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    token_ca_cert: x509.Certificate
    token_ca_key: ec.EllipticCurvePrivateKey
    signing_key: bytes = field(repr=False)

    @property
    def ca_file(self) -> Path:
        """The PIA-like CA certificate (PIA_CA_CERT)."""
        return self.folder / "pia-ca.crt"

    @property
    def token_ca_file(self) -> Path:
        """The token endpoint's CA certificate (REQUESTS_CA_BUNDLE)."""
        return self.folder / "token-ca.crt"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Certificate | None, key: Any) -> x509.CertificateBuilder:
    # A wide window: time-machine moves Python's clock, OpenSSL checks the real one.
    now = datetime.now(UTC)
    issuer_name = issuer.subject if issuer else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(aki, critical=False)
    return builder


def _key_usage(**wanted: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(flags | wanted))


def _make_material(folder: Path) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Like PIA's CA: basicConstraints not critical, and no keyUsage at all.
    ca_cert = (
        _builder("PIA Simulator CA", None, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    token_key = ec.generate_private_key(ec.SECP256R1())
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    token_cert = (
        _builder("PIA Simulator Public Root", None, token_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(token_key, hashes.SHA256())
    )
    for stem, cert, key in (("pia-ca", ca_cert, ca_key), ("token-ca", token_cert, token_key)):
        _write_key(folder / f"{stem}.key", key)
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signing = folder / "signing.key"
    signing.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
    signing.chmod(0o600)


def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def ensure_material(folder: Path) -> Material:
    """Load the CAs and signing key from ``folder``, creating them on first use.

    A lock file makes concurrent simulator processes on one folder share one set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "signing.key").exists():
            _make_material(folder)

    def key(name: str) -> Any:
        return serialization.load_pem_private_key((folder / name).read_bytes(), None)

    return Material(
        folder=folder,
        ca_cert=x509.load_pem_x509_certificate((folder / "pia-ca.crt").read_bytes()),
        ca_key=key("pia-ca.key"),
        token_ca_cert=x509.load_pem_x509_certificate((folder / "token-ca.crt").read_bytes()),
        token_ca_key=key("token-ca.key"),
        signing_key=bytes.fromhex((folder / "signing.key").read_text(encoding="ascii")),
    )


def _leaf_context(
    material: Material, *, token: bool, cn: str, names: list[x509.GeneralName], stem: str
) -> ssl.SSLContext:
    issuer, issuer_key = (
        (material.token_ca_cert, material.token_ca_key)
        if token
        else (material.ca_cert, material.ca_key)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(cn, issuer, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    folder = material.folder / "servers"
    folder.mkdir(exist_ok=True)
    cert_file, key_file = folder / f"{stem}.crt", folder / f"{stem}.key"
    _write_key(key_file, key)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


# --- HTTPS endpoints -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if body and "urlencoded" in self.headers.get("Content-Type", ""):
            query.update(
                {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            )
        reply = self.server.endpoint.answer(url.path, query)
        data = reply.body.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Silent: request lines carry tokens and signatures."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: _Endpoint, ctx: ssl.SSLContext) -> None:
        self.endpoint = endpoint
        self.ssl_context = ctx
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the loop.
        request.settimeout(_IO_TIMEOUT)
        with self.lock:
            self.open.add(request)
        self.endpoint.count_connection()
        try:
            with self.ssl_context.wrap_socket(request, server_side=True) as tls:
                with self.lock:
                    self.open.add(tls)
                try:
                    _Handler(tls, client_address, self)
                finally:
                    with self.lock:
                        self.open.discard(tls)
        except OSError:
            pass  # a client that gave up or rejected our certificate
        finally:
            with self.lock:
                self.open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that time out or hang up are part of the tests."""

    def drop_connections(self) -> None:
        with self.lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Endpoint:
    """An HTTPS server with fault injection; subclasses route requests."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self._ctx = ctx
        self._lock = threading.Lock()
        self._faults: list[Reply] = []
        self._delays: list[float] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether it accepts connections."""
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on the same port; a no-op when running."""
        if self._server is not None:
            return
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self, self._ctx)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every open connection: clients see connection refused."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        thread.join()
        self._server = self._thread = None

    def fail_next(self, reply: Reply, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``reply`` instead of the real answer."""
        with self._lock:
            self._faults.extend([reply] * times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` answers for ``seconds`` (a client timeout)."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def count_connection(self) -> None:
        """Count an accepted TCP connection (gateways keep the number)."""

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        """Pick the injected fault or the real answer (called on a connection thread)."""
        with self._lock:
            delay = self._delays.pop(0) if self._delays else 0.0
            fault = self._faults.pop(0) if self._faults else None
        if delay:
            self._stopping.wait(delay)
        return self.route(path, query, fault)

    def route(self, path: str, query: dict[str, str], fault: Reply | None) -> Reply:
        """Answer one request; ``fault`` replaces the real answer when set."""
        raise NotImplementedError


@dataclass(frozen=True)
class TokenStats:
    """What the token endpoint saw."""

    requests: int = 0
    issued: int = 0


class TokenEndpoint(_Endpoint):
    """``POST /api/client/v2/token`` with form fields ``username`` and ``password``."""

    PATH = "/api/client/v2/token"

    def __init__(self, sim: PiaSimulator, host: str, port: int) -> None:
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        with contextlib.suppress(ValueError):
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        ctx = _leaf_context(
            sim.material, token=True, cn=host, names=names, stem=f"token-{id(self)}"
        )
        super().__init__(host, port, ctx)
        self._sim = sim
        self._stats = TokenStats()

    def stats(self) -> TokenStats:
        """Counters so far."""
        with self._lock:
            return self._stats

    def route(self, path: str, query: dict[str, str], fault: Reply | None) -> Reply:
        """Check the credentials and hand out a token."""
        with self._lock:
            self._stats = replace(self._stats, requests=self._stats.requests + 1)
        if fault is not None:
            return fault
        if path != self.PATH:
            return Reply(404, '{"message": "not found"}')
        user, password = query.get("username", ""), query.get("password", "")
        expected = self._sim.users.get(user)
        if expected is None or not hmac.compare_digest(expected, password):
            return WRONG_CREDENTIALS
        with self._lock:
            self._stats = replace(self._stats, issued=self._stats.issued + 1)
        return Reply(200, json.dumps({"token": self._sim.new_token()}))


@dataclass(frozen=True)
class GatewayStats:
    """What one gateway saw: connections, requests, and every port issued and bound."""

    connections: int = 0
    signature_requests: int = 0
    binds_ok: int = 0
    binds_failed: int = 0
    issued_ports: tuple[int, ...] = ()
    bound_ports: tuple[int, ...] = ()


class SimGateway(_Endpoint):
    """``/getSignature`` and ``/bindPort`` on a PIA-like certificate named ``cn``."""

    def __init__(
        self, sim: PiaSimulator, *, host: str, port: int, cn: str, san: bool, accepts_foreign: bool
    ) -> None:
        names: list[x509.GeneralName] = [x509.DNSName(cn)] if san else []
        ctx = _leaf_context(sim.material, token=False, cn=cn, names=names, stem=f"gw-{id(self)}")
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

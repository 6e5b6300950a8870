"""PIA's HTTP API: the token endpoint and a gateway's getSignature and bindPort.

The token endpoint is a public site verified with the normal trust store (requests honours
``REQUESTS_CA_BUNDLE``). A gateway is reached by its IP and verified against PIA's CA only
and against its server name (SAN or CN), over the transport in :mod:`pia_mqtt.pia.transport`.

Every library error is translated at this boundary into :mod:`pia_mqtt.errors`, with a
message built here: requests puts the full URL, query string included, into its errors,
and the query carries the token, payload and signature. Request detail is logged at DEBUG
only, redacted; importing this module (through :mod:`pia_mqtt.pia.transport`) also puts a
redacting filter on urllib3's request logger, whose DEBUG lines carry the query string. One
:class:`PiaClient` belongs to one thread (the engine's).
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import TYPE_CHECKING, Any

import requests

from pia_mqtt import redact
from pia_mqtt.errors import (
    PiaAuthError,
    PiaRefusedError,
    PiaReplyError,
    PiaTLSError,
    PiaUnavailableError,
)
from pia_mqtt.pia.lease import Lease, parse_signature_reply
from pia_mqtt.pia.transport import GatewayAdapter, GatewayNameMismatch

if TYPE_CHECKING:
    from pathlib import Path

    from pia_mqtt.core.model import GatewayTarget

log = logging.getLogger(__name__)

_CREDENTIALS_HINT = "check PIA_USER and PIA_PASS (or PIA_PASS_FILE)"
_MAX_SERVER_MESSAGE = 120


class PiaClient:
    """Token, getSignature and bindPort, with errors translated and secrets kept out."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        token_url: str,
        ca_file: Path,
        gateway_port: int = 19999,
        timeout: float = 5.0,
    ) -> None:
        self._username = username
        self._password = password
        self._token_url = token_url
        self._ca_file = ca_file
        self._port = gateway_port
        self._timeout = timeout
        self._token_session = requests.Session()
        self._gateways: dict[tuple[str, str], requests.Session] = {}
        redact.register(password)

    def get_token(self) -> str:
        """Fetch a token (POST username/password); raises a PiaError subclass."""
        where = f"fetching a PIA token from {redact.redact(_without_query(self._token_url))}"
        log.debug("%s", where)
        try:
            response = self._token_session.post(
                self._token_url,
                data={"username": self._username, "password": self._password},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise PiaUnavailableError(
                f"{where} failed: its certificate is not trusted ({_cause(exc)}); for a "
                "private token endpoint set REQUESTS_CA_BUNDLE, else check PIA_TOKEN_URL"
            ) from None
        except requests.RequestException as exc:
            raise self._network_error(where, exc, "check the network and PIA_TOKEN_URL") from None
        code = response.status_code
        log.debug("%s: HTTP %d", where, code)
        if code in (401, 403):
            raise PiaAuthError(
                f"{where} failed: PIA refused the credentials (HTTP {code}); {_CREDENTIALS_HINT}"
            )
        if code >= 500 or code == 429:
            raise PiaUnavailableError(f"{where} failed: HTTP {code}, PIA is having trouble")
        if code != 200:
            raise PiaReplyError(f"{where} failed: unexpected HTTP {code}; check PIA_TOKEN_URL")
        reply = _json(response.content)
        if reply is None:
            raise PiaReplyError(f"{where} failed: the reply is not JSON; check PIA_TOKEN_URL")
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise PiaAuthError(f"{where} failed: PIA answered without a token; {_CREDENTIALS_HINT}")
        redact.register(token)
        return token

    def get_signature(self, gateway: GatewayTarget, token: str) -> Lease:
        """Ask the gateway for a payload+signature (a port); the raw reply is kept as is."""
        where = f"getSignature on PIA gateway {self._describe(gateway)}"
        response = self._gateway_get(gateway, "getSignature", {"token": token}, where)
        code = response.status_code
        reply = _json(response.content)
        message = _message(reply)
        if code >= 500 or code == 429:
            raise PiaUnavailableError(f"{where} failed: HTTP {code}, the gateway is having trouble")
        if "no auth data" in message.lower():
            raise PiaReplyError(f"{where} failed: the gateway says 'no auth data' (no valid token)")
        if code != 200:
            _raise_refusal(where, code, message)
            if reply is None:
                raise PiaReplyError(f"{where} failed: HTTP {code}, {_not_json(response)}")
        try:
            lease = parse_signature_reply(_text(response.content, where))
        except PiaReplyError as exc:
            raise PiaReplyError(f"{where} failed: {exc}") from None
        redact.register(lease.payload, lease.signature)
        log.debug("%s: port %d until %s", where, lease.port, lease.expires_at.isoformat())
        return lease

    def bind(self, gateway: GatewayTarget, lease: Lease) -> None:
        """Send bindPort with the payload and signature exactly as stored; raise on refusal."""
        redact.register(lease.payload, lease.signature)
        where = f"bindPort for port {lease.port} on PIA gateway {self._describe(gateway)}"
        params = {"payload": lease.payload, "signature": lease.signature}
        response = self._gateway_get(gateway, "bindPort", params, where)
        code = response.status_code
        reply = _json(response.content)
        message = _message(reply)
        if code >= 500 or code == 429:
            raise PiaUnavailableError(f"{where} failed: HTTP {code}, the gateway is having trouble")
        _raise_refusal(where, code, message)
        if reply is None:
            raise PiaReplyError(f"{where} failed: HTTP {code}, {_not_json(response)}")
        if code == 200 and reply.get("status") == "OK":
            log.debug("%s: OK", where)
            return
        if "no auth data" in message.lower() or code == 200:
            raise PiaRefusedError(
                f"{where} failed: status {str(reply.get('status'))[:40]!r}{_said(message)}",
                reason="refused",
            )
        raise PiaReplyError(f"{where} failed: unexpected HTTP {code}{_said(message)}")

    def close(self) -> None:
        """Close every connection (token endpoint and gateways)."""
        for session in self._gateways.values():
            session.close()
        self._gateways.clear()
        self._token_session.close()

    def _describe(self, gateway: GatewayTarget) -> str:
        return f"{gateway.address}:{self._port} ({gateway.hostname})"

    def _session(self, gateway: GatewayTarget) -> requests.Session:
        key = (gateway.address, gateway.hostname)
        session = self._gateways.get(key)
        if session is None:
            session = requests.Session()
            # No proxies or netrc from the environment: the gateway is inside the tunnel.
            session.trust_env = False
            # Belt and braces: a path, never True (requests >= 2.32 would load certifi).
            session.verify = str(self._ca_file)
            session.adapters.clear()
            session.mount(
                "https://",
                GatewayAdapter(gateway.address, self._port, gateway.hostname, self._ca_file),
            )
            self._gateways[key] = session
        return session

    def _gateway_get(
        self, gateway: GatewayTarget, endpoint: str, params: dict[str, str], where: str
    ) -> requests.Response:
        if not gateway.hostname:
            raise PiaTLSError(f"{where} failed: no server name to verify; set PIA_HOSTNAME")
        host = f"[{gateway.address}]" if ":" in gateway.address else gateway.address
        url = f"https://{host}:{self._port}/{endpoint}"
        log.debug("%s: GET /%s (parameters redacted)", where, endpoint)
        try:
            response = self._session(gateway).get(
                url, params=params, timeout=self._timeout, allow_redirects=False
            )
        except requests.exceptions.SSLError as exc:
            log.debug("%s: TLS failure: %s", where, redact.redact(exc))
            raise PiaTLSError(
                f"{where} failed: the gateway did not prove it is PIA server "
                f"{gateway.hostname!r} ({_cause(exc)}); check PIA_GATEWAY, PIA_HOSTNAME "
                "and PIA_CA_CERT"
            ) from None
        except requests.RequestException as exc:
            raise self._network_error(where, exc, "is the VPN up? check PIA_GATEWAY") from None
        log.debug("%s: HTTP %d", where, response.status_code)
        return response

    def _network_error(
        self, where: str, exc: requests.RequestException, hint: str
    ) -> PiaUnavailableError:
        log.debug("%s: %s", where, redact.redact(exc))
        if isinstance(exc, requests.Timeout):
            return PiaUnavailableError(f"{where} failed: no answer within {self._timeout:g} s")
        return PiaUnavailableError(f"{where} failed: {_cause(exc)}; {hint}")


def _raise_refusal(where: str, code: int, message: str) -> None:
    """Raise for the refusals PIA is known to send; a new signature cures each."""
    low = message.lower()
    said = _said(message)
    if code == 409 or "busy" in low:
        raise PiaRefusedError(f"{where} failed: the port is busy{said}", reason="busy")
    if "bad signature" in low:
        raise PiaRefusedError(f"{where} failed: bad signature{said}", reason="bad_signature")
    if "expired" in low:
        raise PiaRefusedError(f"{where} failed: the signature expired{said}", reason="expired")
    if "unauthorized" in low or code in (401, 403):
        raise PiaRefusedError(
            f"{where} failed: unauthorized client (HTTP {code}){said}; the request must go "
            "through the VPN tunnel to the gateway it is connected to (check PIA_GATEWAY)",
            reason="unauthorized",
        )


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return reply if isinstance(reply, dict) else None


def _text(body: bytes, where: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PiaReplyError(f"{where} failed: the reply is not UTF-8 text") from None


def _message(reply: dict[str, Any] | None) -> str:
    message = (reply or {}).get("message")
    return message if isinstance(message, str) else ""


def _said(message: str) -> str:
    if not message:
        return ""
    return f" (gateway said {redact.redact(message)[:_MAX_SERVER_MESSAGE]!r})"


def _not_json(response: requests.Response) -> str:
    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    return f"a reply that is not JSON ({kind}); is this a PIA gateway? check PIA_GATEWAY"


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _chain(exc: BaseException) -> list[BaseException]:
    """List the exception and all it wraps (args, urllib3's reason, cause, context)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if any(item is s for s in seen):
            continue
        seen.append(item)
        nested = [a for a in item.args if isinstance(a, BaseException)]
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            nested.append(reason)
        nested += [e for e in (item.__cause__, item.__context__) if e is not None]
        todo.extend(nested)
    return seen


def _cause(exc: BaseException) -> str:
    """Give a short, redacted reason from the innermost useful exception."""
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, GatewayNameMismatch):
            return redact.redact(item.detail)
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError) and getattr(item, "verify_message", None):
            return f"certificate verify failed: {item.verify_message}"
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ssl.SSLError) and getattr(item, "reason", None):
            return f"TLS error: {item.reason}"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return redact.redact(item.strerror)
    return type(chain[-1]).__name__

"""PIA's HTTP API: the token endpoint and a gateway's getSignature and bindPort.

The token endpoint is a public site verified with the normal trust store (requests honours
``REQUESTS_CA_BUNDLE``). A gateway is reached by its IP and verified against PIA's CA only
and against its server name (SAN or CN), over the transport in :mod:`pia_mqtt.pia.transport`.

Every library error is translated at this boundary into :mod:`pia_mqtt.errors`, with a
message built here (words from :mod:`pia_mqtt.pia.replies`): requests puts the full URL,
query string included, into its errors, and the query carries the token, payload and
signature. Request detail is logged at DEBUG only, redacted; importing this module (through
:mod:`pia_mqtt.pia.transport`) also puts a redacting filter on urllib3's request logger,
whose DEBUG lines carry the query string. One :class:`PiaClient` belongs to one thread (the
engine's).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import requests

from pia_mqtt import limits, redact
from pia_mqtt.errors import (
    PiaAuthError,
    PiaRefusedError,
    PiaReplyError,
    PiaTLSError,
    PiaUnavailableError,
)
from pia_mqtt.pia import replies
from pia_mqtt.pia.lease import Lease, parse_signature_reply
from pia_mqtt.pia.transport import GatewayAdapter

if TYPE_CHECKING:
    from pathlib import Path

    from pia_mqtt.core.model import GatewayTarget

log = logging.getLogger(__name__)

_CREDENTIALS_HINT = "check PIA_USER and PIA_PASS (or PIA_PASS_FILE)"


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
        timeout: float = 15.0,
    ) -> None:
        self._username = username
        self._password = password
        self._token_url = token_url
        self._ca_file = ca_file
        self._port = gateway_port
        # One deadline for each whole request (connect, TLS, reply), not per socket read.
        self._timeout = timeout
        # trust_env: REQUESTS_CA_BUNDLE (and a proxy) apply to the public token endpoint.
        self._token_session = limits.session(trust_env=True)
        self._gateways: dict[tuple[str, str], requests.Session] = {}
        redact.register(password)

    def get_token(self) -> str:
        """Fetch a token (POST username/password); raises a PiaError subclass."""
        where = f"fetching a PIA token from {redact.redact(replies.without_query(self._token_url))}"
        log.debug("%s", where)
        try:
            response = limits.fetch(
                self._token_session,
                "POST",
                self._token_url,
                deadline=self._timeout,
                data={"username": self._username, "password": self._password},
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise PiaUnavailableError(
                f"{where} failed: its certificate is not trusted ({replies.cause(exc)}); for a "
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
        reply = replies.json_object(response.content)
        if reply is None:
            raise PiaReplyError(f"{where} failed: the reply is not JSON; check PIA_TOKEN_URL")
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise PiaAuthError(f"{where} failed: PIA answered without a token; {_CREDENTIALS_HINT}")
        redact.register(token, kind="token")
        return token

    def get_signature(self, gateway: GatewayTarget, token: str) -> Lease:
        """Ask the gateway for a payload+signature (a port); the raw reply is kept as is."""
        where = f"getSignature on PIA gateway {self._describe(gateway)}"
        response = self._gateway_get(gateway, "getSignature", {"token": token}, where)
        code = response.status_code
        reply = replies.json_object(response.content)
        message = replies.server_message(reply)
        if code >= 500 or code == 429:
            raise PiaUnavailableError(f"{where} failed: HTTP {code}, the gateway is having trouble")
        if "no auth data" in message.lower():
            raise PiaReplyError(f"{where} failed: the gateway says 'no auth data' (no valid token)")
        if code != 200:
            replies.raise_refusal(where, code, message)
            if reply is None:
                raise PiaReplyError(f"{where} failed: HTTP {code}, {replies.not_json(response)}")
        try:
            lease = parse_signature_reply(replies.reply_text(response.content, where))
        except PiaReplyError as exc:
            raise PiaReplyError(f"{where} failed: {exc}") from None
        redact.register(lease.payload, lease.signature, kind="signature")
        log.debug("%s: port %d until %s", where, lease.port, lease.expires_at.isoformat())
        return lease

    def bind(self, gateway: GatewayTarget, lease: Lease) -> None:
        """Send bindPort with the payload and signature exactly as stored; raise on refusal."""
        redact.register(lease.payload, lease.signature, kind="signature")
        where = f"bindPort for port {lease.port} on PIA gateway {self._describe(gateway)}"
        params = {"payload": lease.payload, "signature": lease.signature}
        response = self._gateway_get(gateway, "bindPort", params, where)
        code = response.status_code
        reply = replies.json_object(response.content)
        message = replies.server_message(reply)
        if code >= 500 or code == 429:
            raise PiaUnavailableError(f"{where} failed: HTTP {code}, the gateway is having trouble")
        replies.raise_refusal(where, code, message)
        if reply is None:
            raise PiaReplyError(f"{where} failed: HTTP {code}, {replies.not_json(response)}")
        if code == 200 and reply.get("status") == "OK":
            log.debug("%s: OK", where)
            return
        said = replies.gateway_said(message)
        if "no auth data" in message.lower() or code == 200:
            raise PiaRefusedError(
                f"{where} failed: status {str(reply.get('status'))[:40]!r}{said}",
                reason="refused",
            )
        raise PiaReplyError(f"{where} failed: unexpected HTTP {code}{said}")

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
            response = limits.fetch(
                self._session(gateway),
                "GET",
                url,
                deadline=self._timeout,
                params=params,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            log.debug("%s: TLS failure: %s", where, redact.redact(exc))
            raise PiaTLSError(
                f"{where} failed: the gateway did not prove it is PIA server "
                f"{gateway.hostname!r} ({replies.cause(exc)}); check PIA_GATEWAY, PIA_HOSTNAME "
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
        if isinstance(exc, limits.ReplyTooLarge):
            return PiaUnavailableError(f"{where} failed: {exc}; {hint}")
        return PiaUnavailableError(f"{where} failed: {replies.cause(exc)}; {hint}")

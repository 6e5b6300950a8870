"""Reading PIA's replies and errors into words: refusals, bodies, the cause of a failure.

Pure helpers for :mod:`pia_mqtt.pia.client`; every text they return is redacted and says
nothing of the query string (it carries the token, payload and signature).
"""

from __future__ import annotations

import json
import ssl
from typing import TYPE_CHECKING, Any

from pia_mqtt import redact
from pia_mqtt.errors import PiaRefusedError, PiaReplyError, exception_chain
from pia_mqtt.pia.transport import GatewayNameMismatch

if TYPE_CHECKING:
    import requests

MAX_SERVER_MESSAGE = 120


def raise_refusal(where: str, code: int, message: str) -> None:
    """Raise for the refusals PIA is known to send; a new signature cures each."""
    low = message.lower()
    said = gateway_said(message)
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


def json_object(body: bytes) -> dict[str, Any] | None:
    """The reply as a JSON object, or None when it is not one."""
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return reply if isinstance(reply, dict) else None


def reply_text(body: bytes, where: str) -> str:
    """The reply as UTF-8 text (PiaReplyError naming ``where`` when it is not)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PiaReplyError(f"{where} failed: the reply is not UTF-8 text") from None


def server_message(reply: dict[str, Any] | None) -> str:
    """The gateway's ``message`` field, or an empty string."""
    message = (reply or {}).get("message")
    return message if isinstance(message, str) else ""


def gateway_said(message: str) -> str:
    """`` (gateway said ...)`` for an error text: redacted and cut short; empty if none."""
    if not message:
        return ""
    return f" (gateway said {redact.redact(message)[:MAX_SERVER_MESSAGE]!r})"


def not_json(response: requests.Response) -> str:
    """Words for a reply that is not JSON, naming its content type."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    return f"a reply that is not JSON ({kind}); is this a PIA gateway? check PIA_GATEWAY"


def without_query(url: str) -> str:
    """The URL without query and fragment (they may carry credentials)."""
    return url.split("?", 1)[0].split("#", 1)[0]


def cause(exc: BaseException) -> str:
    """Give a short, redacted reason from the innermost useful exception."""
    chain = exception_chain(exc)
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

"""The lease (payload + signature = port) as PIA's getSignature reply gives it.

The getSignature reply is kept exactly as PIA sent it: the payload goes back to bindPort
byte for byte, because re-encoding it (as some clients do) breaks the signature. The file
that keeps it across restarts is :class:`pia_mqtt.pia.lease.LeaseStore`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pia_mqtt.core.model import valid_port
from pia_mqtt.errors import PiaReplyError

# PIA's desktop client reuses a saved signature only while more than this remains.
RENEW_MARGIN = timedelta(days=7)


@dataclass(frozen=True, repr=False)
class Lease:
    """A getSignature result: the port, its expiry, and the raw data bindPort needs."""

    port: int
    expires_at: datetime
    payload: str
    signature: str
    raw: str

    def __repr__(self) -> str:
        # Payload and signature are credentials for the port: never in a repr or log.
        return f"Lease(port={self.port}, expires_at={self.expires_at.isoformat()})"

    def remaining(self, now: datetime) -> timedelta:
        """Time left before the signature expires."""
        return self.expires_at - now

    def usable(self, now: datetime) -> bool:
        """Whether the lease may still be bound (more than the 7-day margin left)."""
        return self.remaining(now) > RENEW_MARGIN

    def renew_at(self) -> datetime:
        """When to replace it with a fresh signature."""
        return self.expires_at - RENEW_MARGIN


def clock_warning(lease: Lease, now: datetime) -> str:
    """The warning for a fresh signature that already looks unusable (pure).

    PIA issues signatures for about two months, so a fresh one with less than the margin
    left means this host's clock is ahead (or PIA's behind): the lease is kept, not renewed
    on every keep-alive (that gave a new port every 15 minutes).
    """
    left = lease.remaining(now)
    seen = f"expired {_days(-left)} ago" if left <= timedelta(0) else f"only {_days(left)} left"
    return (
        f"PIA's new signature for port {lease.port} is valid until "
        f"{lease.expires_at.isoformat(timespec='seconds')}, but by this host's clock "
        f"({now.astimezone(UTC).isoformat(timespec='seconds')}) it has {seen}: the system "
        "clock looks wrong (check NTP or the RTC). Using the signature anyway; it is replaced "
        "only when PIA refuses it"
    )


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days" if days >= 1 else f"{delta.total_seconds() / 3600:.1f} hours"


def parse_signature_reply(raw: str) -> Lease:
    """Decode a getSignature reply (the body as received) into a Lease.

    Raises PiaReplyError with a message that never contains the payload or signature.
    """
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError):
        raise PiaReplyError("getSignature answered with something that is not JSON") from None
    if not isinstance(reply, dict):
        raise PiaReplyError("getSignature answered with JSON that is not an object")
    status = reply.get("status")
    if status != "OK":
        message = reply.get("message")
        detail = f": {message}" if isinstance(message, str) and len(message) < 200 else ""
        raise PiaReplyError(
            f"getSignature answered status {str(status)[:40]!r}{detail}; this server may not "
            "offer port forwarding (PIA disables it on US servers): pick another region"
        )
    payload, signature = reply.get("payload"), reply.get("signature")
    if not (isinstance(payload, str) and payload and isinstance(signature, str) and signature):
        raise PiaReplyError("getSignature reply has no payload or signature")
    data = _decode_payload(payload)
    port = data.get("port")
    if not valid_port(port):
        raise PiaReplyError(f"getSignature payload has no valid port (got {str(port)[:20]!r})")
    expires_at = _parse_expiry(data.get("expires_at"))
    assert isinstance(port, int)  # noqa: S101 - narrowed by valid_port for mypy
    return Lease(port=port, expires_at=expires_at, payload=payload, signature=signature, raw=raw)


def _decode_payload(payload: str) -> dict[str, Any]:
    try:
        decoded = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        data = json.loads(decoded)
    except (binascii.Error, ValueError, RecursionError):
        raise PiaReplyError("getSignature payload is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise PiaReplyError("getSignature payload is not a JSON object")
    return data


def _parse_expiry(value: object) -> datetime:
    if not isinstance(value, str):
        raise PiaReplyError("getSignature payload has no expires_at")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        # Python 3.11 accepts up to 6 fractional digits only in some forms; trim to 6.
        moment = _parse_long_fraction(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        # Year 1 or 9999 with an offset has no UTC form, and the renewal time (7 days
        # earlier) must exist too.
        moment = moment.astimezone(UTC)
        _ = moment - RENEW_MARGIN
    except OverflowError:
        raise PiaReplyError(f"getSignature expires_at is out of range ({text[:40]!r})") from None
    return moment


def _parse_long_fraction(text: str) -> datetime:
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{tail}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise PiaReplyError(f"getSignature expires_at is not a date ({text[:40]!r})") from None

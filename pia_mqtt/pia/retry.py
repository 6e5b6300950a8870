"""How the lease manager backs off after a failure (pure).

Every retry is capped at 60 s (DESIGN: every backoff, of any kind). Refused credentials wait
the whole cap at once: retrying sooner only risks PIA throttling the account.
"""

from __future__ import annotations

from datetime import timedelta

from pia_mqtt.errors import GatewayNotFoundError, PiaAuthError, PiaMqttError, PiaUnavailableError

MAX_BACKOFF = 60.0
FIRST_BACKOFF = 2.0
# After this many failures in a row the gateway may have moved: detect it again.
REDETECT_AFTER = 2
# PIA deletes a port that has not been bound for 15 minutes.
PORT_LIFETIME = timedelta(minutes=15)


def retry_delay(exc: PiaMqttError, failures: int) -> float:
    """Seconds to wait before the next attempt, after ``failures`` failures in a row (>= 1)."""
    if isinstance(exc, PiaAuthError):
        return MAX_BACKOFF
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** max(0, failures - 1))


def forget_gateway(exc: PiaMqttError, failures: int) -> bool:
    """Whether the gateway should be detected again before the next attempt."""
    return isinstance(exc, GatewayNotFoundError) or (
        isinstance(exc, PiaUnavailableError) and failures >= REDETECT_AFTER
    )

"""``/healthz`` and ``/readyz``: what "alive" and "ready" mean, as pure functions.

Alive: the engine thread called this sink (a snapshot, an event, or the heartbeat that its
timer sends every :data:`HEARTBEAT` seconds) within :data:`LIVENESS_WINDOW`. The HTTP
thread answering proves nothing about the engine; the heartbeat only reaches the sink when
the engine's loop runs its timers, so a loop stuck in a call or dead stops it. The window
covers the longest job the engine runs on its own thread (token + signature + bind, 15 s
each at most, plus gateway detection) with room for two missed beats.

Ready: a port is held and was bound (or confirmed by gluetun) within two refresh intervals,
the same rule as ``pia-mqtt healthcheck``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pia_mqtt.core.model import valid_port
from pia_mqtt.http.board import View

HEARTBEAT = 30.0
LIVENESS_WINDOW = 120.0


@dataclass(frozen=True)
class Verdict:
    """A probe's answer and the one line it prints."""

    ok: bool
    reason: str


def liveness(view: View, *, monotonic_now: float, window: float = LIVENESS_WINDOW) -> Verdict:
    """Alive when the engine thread reached the sink within ``window`` seconds."""
    age = monotonic_now - view.engine_seen
    if age > window:
        return Verdict(
            ok=False, reason=f"engine loop silent for {age:.0f} s (more than {window:.0f} s)"
        )
    return Verdict(ok=True, reason=f"engine loop seen {age:.0f} s ago")


def readiness(view: View, *, now: datetime, refresh_interval: float) -> Verdict:
    """Ready when a port is held and its last successful bind is within two intervals."""
    snapshot = view.snapshot
    if not valid_port(snapshot.port):
        return Verdict(ok=False, reason=f"no port yet (status {snapshot.status.value})")
    if snapshot.last_refresh is None:
        return Verdict(ok=False, reason=f"port {snapshot.port} not bound yet")
    age = (now - snapshot.last_refresh).total_seconds()
    if age > 2 * refresh_interval:
        return Verdict(
            ok=False,
            reason=f"last successful bind {age:.0f} s ago (more than two intervals of "
            f"{refresh_interval:.0f} s)",
        )
    return Verdict(
        ok=True,
        reason=f"port {snapshot.port} bound {age:.0f} s ago (status {snapshot.status.value})",
    )

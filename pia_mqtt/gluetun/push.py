"""Push our PIA port into gluetun's firewall (PIA mode inside gluetun's network namespace).

The sink only decides when to push and what to report; the HTTP calls are
:class:`pia_mqtt.gluetun.client.GluetunClient`'s.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, SinkHealth, SyncState, valid_port
from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import GluetunAuthError, GluetunUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pia_mqtt.core.model import Inbox, Snapshot
    from pia_mqtt.gluetun.client import GluetunClient

log = logging.getLogger(__name__)

SINK_NAME = "gluetun"


class GluetunPushSink:
    """PIA mode inside gluetun's namespace: push our port so gluetun's firewall lets peers in.

    Every port change is PUT at once; every check GETs gluetun's ports and PUTs ours again
    if gluetun forgot it (restart) or was not ready. Work runs on one worker thread; a burst
    of changes collapses into one PUT of the newest port.
    """

    name = SINK_NAME

    def __init__(
        self,
        client: GluetunClient,
        inbox: Inbox,
        *,
        check_interval: float = 30.0,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._inbox = inbox
        self._interval = check_interval
        self._clock = clock
        self._cond = threading.Condition()
        self._wanted: int | None = None
        self._push = self._verify = self._busy = self._stopping = False
        self._reported: tuple[SyncState, int, str | None] | None = None
        self._last_sync: datetime | None = None
        self._thread = threading.Thread(target=self._run, name="pia-mqtt-gluetun", daemon=True)
        self._thread.start()

    @property
    def check_interval(self) -> float:
        """Seconds between the GET comparisons that detect a gluetun restart."""
        return self._interval

    def publish(self, snapshot: Snapshot) -> None:
        """Queue a PUT when the port changed; ports that are not valid are never pushed."""
        port = snapshot.port
        if not valid_port(port):
            return
        with self._cond:
            if port != self._wanted:
                self._wanted = port
                self._push = True
                self._cond.notify_all()

    def event(self, event: Event) -> None:
        """Events need nothing from gluetun."""

    def check(self, snapshot: Snapshot) -> None:
        """Queue a GET comparison (and a PUT if gluetun lost the port)."""
        self.publish(snapshot)
        with self._cond:
            if self._wanted is not None and not self._push:
                self._verify = True
                self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until queued pushes and checks are done; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._push or self._verify or self._busy), timeout
            )

    def close(self) -> None:
        """Stop the worker (waiting at most about 2 s) and close the client."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        self._client.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._push or self._verify)
                if self._stopping:
                    return
                push, self._push, self._verify = self._push, False, False
                port, self._busy = self._wanted, True
            try:
                if port is not None:
                    self._sync(port, push=push)
            except Exception:
                log.exception("gluetun worker failed unexpectedly; it will retry at the next check")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _sync(self, port: int, *, push: bool) -> None:
        why = "the port changed"
        try:
            if not push:
                held = self._client.forwarded_ports()
                if port in held:
                    self._report(SyncState.IN_SYNC, port, None, since=self._last_sync)
                    return
                why = f"gluetun held {held or 'no port'} (restarted?)"
                if held:
                    why += "; if gluetun forwards a port itself, set VPN_PORT_FORWARDING=off there"
                log.info("gluetun lost port %s: %s; pushing it again", port, why)
            self._client.set_forwarded_ports([port])
        except GluetunAuthError as exc:
            self._fail(SyncState.AUTH_FAILED, port, exc)
        except GluetunUnavailableError as exc:
            self._fail(SyncState.UNREACHABLE, port, exc)
        except GluetunError as exc:
            self._fail(SyncState.OUT_OF_SYNC, port, exc)
        else:
            now = self._clock()
            self._last_sync = now
            message = f"gluetun opened port {port} in its firewall ({why})"
            log.info("%s", message)
            self._report(SyncState.IN_SYNC, port, None, since=now)
            self._inbox.emit(Event(EventKind.GLUETUN_PUSHED, now, message, port=port))

    def _fail(self, state: SyncState, port: int, exc: GluetunError) -> None:
        error = redact.describe(exc)
        # One event per new failure state, not one per check while it lasts.
        new_state = self._reported is None or self._reported[:2] != (state, port)
        self._report(state, port, error, since=self._last_sync)
        if new_state:
            log.warning("gluetun: %s; retrying at the next check", error)
            self._inbox.emit(Event(EventKind.GLUETUN_FAILED, self._clock(), error, port=port))
        else:
            log.debug("gluetun still failing: %s", error)

    def _report(
        self, state: SyncState, port: int, error: str | None, *, since: datetime | None
    ) -> None:
        """Report health when it changed, not on every check."""
        key = (state, port, error)
        if key != self._reported:
            self._reported = key
            health = SinkHealth(state, port=port, last_sync=since, error=error)
            self._inbox.report(SINK_NAME, health)

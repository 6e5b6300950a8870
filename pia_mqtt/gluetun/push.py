"""Push our PIA port into gluetun's firewall (PIA mode inside gluetun's network namespace).

Only a gluetun that accepts ``PUT /v1/portforward`` can take it: a development build whose
provider has no port forwarding of its own (``VPN_SERVICE_PROVIDER=custom``). The first PUT
tells which gluetun this is, and the answer is logged, put in the ``gluetun`` entry of the
state and announced at once, each refusal once, with its fix:

- 400 ``method PUT not supported``: a tagged release (GET only);
- 500 ``failed setting forwarded ports`` with a started port-forward service: its provider
  forwards itself (PIA, ProtonVPN, ...).

Neither changes by itself, so while refused the sink PUTs at most once per check interval.
Seeing gluetun restart lifts that limit: every check GETs ``/v1/portforward`` (which never
changes gluetun), and a restart shows there as a control server that was unreachable and
answers again, a reply in another shape (another version), or ``"ports": null`` (a fresh
process whose tunnel is not up yet). Then the PUT is tried again at once.

The HTTP calls are :class:`pia_mqtt.gluetun.client.GluetunClient`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, SinkHealth, SyncState, valid_port
from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import (
    GluetunAuthError,
    GluetunRefusedError,
    GluetunUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pia_mqtt.core.model import Inbox, Snapshot
    from pia_mqtt.gluetun.client import GluetunClient

log = logging.getLogger(__name__)

SINK_NAME = "gluetun"
# Checks fire once per interval; a little slack keeps timer jitter from skipping one.
_RETRY_SLACK = 0.9
_DOWN = "down"


class GluetunPushSink:
    """PIA mode inside gluetun's namespace: push our port so gluetun's firewall lets peers in.

    Every port change is PUT at once; every check, and every tunnel change the engine
    announces (``tunnel_epoch``), GETs gluetun's ports and PUTs ours again if gluetun forgot
    it (a tunnel restart) or was not ready. Work runs on one worker
    thread; a burst of changes collapses into one PUT of the newest port.
    """

    name = SINK_NAME

    def __init__(
        self,
        client: GluetunClient,
        inbox: Inbox,
        *,
        check_interval: float = 30.0,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._inbox = inbox
        self._interval = check_interval
        self._clock = clock
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._wanted: int | None = None
        self._push = self._verify = self._busy = self._stopping = False
        self._epoch: int | None = None  # the snapshot's tunnel_epoch last seen
        # Worker thread only:
        self._reported: tuple[SyncState, int, str | None] | None = None
        self._last_sync: datetime | None = None
        self._refusal: GluetunRefusedError | None = None
        self._announced: set[str] = set()  # refusal messages already logged and announced
        self._put_at: float | None = None
        self._seen: object = None  # what the last GET looked like (restart detection)
        self._accepted = False
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
            epoch, self._epoch = self._epoch, snapshot.tunnel_epoch
            if port != self._wanted:
                self._wanted = port
                self._push = True
                self._cond.notify_all()
            elif epoch is not None and epoch != snapshot.tunnel_epoch and not self._push:
                # The tunnel changed (VPN reconnect): gluetun recreated its port-forward
                # service and forgot the port. Look now rather than at the next check.
                self._verify = True
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
        restarted: str | None = None
        try:
            why, restarted = self._why_put(port, push=push)
            if why is None:
                return
            self._put_at = self._monotonic()
            self._client.set_forwarded_ports([port])
        except GluetunRefusedError as exc:
            self._refused(port, exc, restarted)
        except GluetunAuthError as exc:
            self._fail(SyncState.AUTH_FAILED, port, exc)
        except GluetunUnavailableError as exc:
            self._fail(SyncState.UNREACHABLE, port, exc)
        except GluetunError as exc:
            self._fail(SyncState.OUT_OF_SYNC, port, exc)
        else:
            self._accepted_port(port, why)

    def _why_put(self, port: int, *, push: bool) -> tuple[str | None, str | None]:
        """Why to PUT now (None: no PUT now), and what showed that gluetun restarted."""
        if push and self._refusal is None:
            return "the port changed", None
        held, restarted = self._look()
        if self._refusal is not None:
            if restarted is None and not self._retry_due():
                self._report(SyncState.REFUSED, port, redact.describe(self._refusal))
                return None, None
            why = f"gluetun restarted: {restarted}" if restarted else "trying again"
        elif port in held:
            self._report(SyncState.IN_SYNC, port, None)
            return None, None
        else:
            why = f"gluetun held {list(held) or 'no port'} (its tunnel restarted?)"
        if restarted:
            log.info("%s; pushing port %s to gluetun again", why, port)
        return why, restarted

    def _look(self) -> tuple[tuple[int, ...], str | None]:
        """GET gluetun's ports; also say whether gluetun restarted since the last look."""
        try:
            view = self._client.read()
        except GluetunUnavailableError:
            self._seen = _DOWN
            raise
        seen, previous = (view.shape, view.started), self._seen
        self._seen = seen
        if previous is None or previous == seen:
            return view.ports, None
        if previous == _DOWN:
            return view.ports, "its control server was unreachable and answers again"
        if not view.started:
            return view.ports, "it forwards nothing and its tunnel is not up yet"
        if isinstance(previous, tuple) and previous[0] != view.shape:
            return view.ports, f"its GET reply changed from {previous[0]} to {view.shape}"
        return view.ports, "its tunnel came up"

    def _retry_due(self) -> bool:
        """At most one PUT per check interval against a refusal that cannot change by itself."""
        put_at = self._put_at
        return put_at is None or self._monotonic() - put_at >= self._interval * _RETRY_SLACK

    def _accepted_port(self, port: int, why: str) -> None:
        now = self._clock()
        self._last_sync = now
        if self._refusal is not None or not self._accepted:
            kind = "now accepts" if self._refusal is not None else "accepts"
            log.info(
                "gluetun at %s %s PUT /v1/portforward (its provider does not forward by itself)",
                self._client.url,
                kind,
            )
        self._refusal, self._accepted = None, True
        message = f"gluetun opened port {port} in its firewall ({why})"
        log.info("%s", message)
        self._report(SyncState.IN_SYNC, port, None)
        self._inbox.emit(Event(EventKind.GLUETUN_PUSHED, now, message, port=port))

    def _refused(self, port: int, exc: GluetunRefusedError, restarted: str | None) -> None:
        self._refusal = exc
        if self._seen is None:
            # The baseline the next checks compare with to see gluetun restart: the GET
            # that classified a 500, or one GET now.
            view = self._client.last_read
            if view is not None:
                self._seen = (view.shape, view.started)
            else:
                try:
                    self._look()
                except GluetunError:
                    log.debug("gluetun did not answer the GET after its refusal")
        error = redact.describe(exc)
        self._report(SyncState.REFUSED, port, error)
        if error in self._announced:
            if restarted:
                log.info("gluetun still refuses the port after it restarted (same fix as above)")
            log.debug("gluetun still refuses: %s", error)
            return
        self._announced.add(error)
        log.error("%s", error)
        self._inbox.emit(Event(EventKind.GLUETUN_FAILED, self._clock(), error, port=port))

    def _fail(self, state: SyncState, port: int, exc: GluetunError) -> None:
        error = redact.describe(exc)
        # One event per new failure state, not one per check while it lasts.
        new_state = self._reported is None or self._reported[:2] != (state, port)
        self._report(state, port, error)
        if new_state:
            log.warning("gluetun: %s; retrying at the next check", error)
            self._inbox.emit(Event(EventKind.GLUETUN_FAILED, self._clock(), error, port=port))
        else:
            log.debug("gluetun still failing: %s", error)

    def _report(self, state: SyncState, port: int, error: str | None) -> None:
        """Report health when it changed, not on every check."""
        key = (state, port, error)
        if key != self._reported:
            self._reported = key
            since = self._last_sync
            health = SinkHealth(state, port=port, last_sync=since, error=error)
            self._inbox.report(SINK_NAME, health)

"""The torrent sink: keep a torrent client's listening port equal to the forwarded port.

Client-neutral: it sees its client only through :class:`TorrentClient` (qBittorrent is
:mod:`pia_mqtt.torrent.qbittorrent`); each configured client gets a sink of its own, with
its own health entry in the state (named by ``client.name``).

The engine calls :meth:`TorrentSink.publish` and :meth:`TorrentSink.check` on its
own thread; both only record the wanted port and wake this sink's worker thread, which
does all HTTP. Pending work coalesces: only the latest wanted port matters. After every
attempt the worker reports the sink's health to the engine's inbox and emits an event when
it changed the port or when a new kind of failure starts.

Wrong credentials latch (with the health reports, in :mod:`pia_mqtt.torrent.outcome`):
nothing is sent to qBittorrent until ``auth_retry`` has passed on the injected clock, and
after ``max_failed_logins`` refused logins the sink stops logging in altogether. qBittorrent
4.x/5.x ban an IP after 5 refused logins and never forget a failure until a successful login
or the ban (Transmission may lock its RPC for everyone after 100), so a daemon retrying
forever would lock the user out of their own client.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from pia_mqtt.core.model import Event, Inbox, Snapshot, SyncState, valid_port
from pia_mqtt.errors import TorrentAuthError, TorrentBannedError, TorrentClientError
from pia_mqtt.torrent.outcome import Outcomes, ReportsConnectivity

__all__ = ["DEFAULT_MAX_FAILED_LOGINS", "ReportsConnectivity", "TorrentClient", "TorrentSink"]

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# Refused logins per pia-mqtt process. qBittorrent bans at 5 and keeps counting across our
# restarts, so 2 leaves room for one restart of pia-mqtt and a typo in a browser.
DEFAULT_MAX_FAILED_LOGINS = 2


class TorrentClient(Protocol):
    """What the sink needs from a torrent client; used from the sink's worker thread only.

    Errors are :class:`~pia_mqtt.errors.TorrentClientError` subclasses: ``TorrentAuthError``
    (refused credentials, counted in ``failed_logins``), ``TorrentBannedError`` (locked
    out), anything else is transient.
    """

    name: str
    """The sink's name and state key (``qbittorrent``); events are ``<name>_synced`` etc."""
    label: str
    """The client's name for people (``qBittorrent``)."""
    credentials: str
    """The variables to fix when credentials are refused (``QBITTORRENT_USER/...``)."""

    @property
    def failed_logins(self) -> int:
        """Logins refused for wrong credentials since the last successful one."""

    def listen_port(self) -> int:
        """The port the client is set to listen on now (may be 0 or junk: it is checked)."""

    def set_listen_port(self, port: int) -> int:
        """Set the listening port and return what the client reports back."""

    def reapply_listen_port(self, port: int) -> int:
        """Make the client listen on ``port`` again after a tunnel change (same number).

        Called only after the engine re-applied the port (``Snapshot.tunnel_epoch``), never
        on an ordinary check; returns what the client reports back.
        """

    def close(self) -> None:
        """Release connections."""


class TorrentSink:
    """Mirror the forwarded port into one torrent client from a worker thread (owns it)."""

    def __init__(
        self,
        client: TorrentClient,
        inbox: Inbox,
        *,
        check_interval: float,
        clock: Callable[[], datetime],
        auth_retry: timedelta = timedelta(minutes=10),
        max_failed_logins: int = DEFAULT_MAX_FAILED_LOGINS,
        close_timeout: float = 2.0,
    ) -> None:
        self._client = client
        self.name = client.name
        self._label = client.label
        self._check_interval = float(check_interval)
        self._close_timeout = close_timeout
        # Shared with the engine thread, guarded by _cond.
        self._cond = threading.Condition()
        self._wanted: int | None = None
        self._confirmed: int | None = None
        self._epoch: int | None = None  # the snapshot's tunnel_epoch last seen
        self._reapply = False  # the tunnel changed: make the client listen again
        self._pending = False
        self._busy = False
        self._stopping = False
        # Worker-thread state: health, failures and the login latch.
        self._outcomes = Outcomes(
            client,
            inbox,
            clock=clock,
            auth_retry=auth_retry,
            max_failed_logins=max_failed_logins,
            confirmed=self._confirmed_port,
        )
        self._thread = threading.Thread(target=self._run, name=f"{client.name}-sink", daemon=True)
        self._thread.start()

    @property
    def check_interval(self) -> float:
        """Seconds between drift checks (QBITTORRENT_CHECK_INTERVAL for every client)."""
        return self._check_interval

    def publish(self, snapshot: Snapshot) -> None:
        """Queue setting the snapshot's port if qBittorrent is not known to have it."""
        if not valid_port(snapshot.port):
            return  # the VPN is still starting: never hand the client port 0
        with self._cond:
            self._wanted = snapshot.port
            if self._epoch is not None and snapshot.tunnel_epoch != self._epoch:
                self._reapply = True
            self._epoch = snapshot.tunnel_epoch
            if snapshot.port != self._confirmed or self._reapply:
                self._pending = True
                self._cond.notify_all()

    def check(self, snapshot: Snapshot) -> None:
        """Queue reading qBittorrent's port and repairing drift (restart, --torrenting-port)."""
        if not valid_port(snapshot.port):
            return
        with self._cond:
            self._wanted = snapshot.port
            self._pending = True
            self._cond.notify_all()

    def event(self, event: Event) -> None:
        """Events need no action here: the port arrives through publish()."""

    def drain(self, timeout: float) -> bool:
        """Wait until queued work is done; False if it is still running after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._pending or self._busy), timeout)

    def close(self) -> None:
        """Stop the worker; it closes the client once its current request is over."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(self._close_timeout)
        if self._thread.is_alive():
            # Shutdown must stay fast: the daemon thread finishes its request (bounded by
            # the client's timeout) and closes the client itself.
            log.warning("%s worker still busy at shutdown; not waiting for it", self._label)

    def _run(self) -> None:
        try:
            while self._next_job():
                pass
        finally:
            self._client.close()

    def _next_job(self) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                self._pending = False
                self._cond.notify_all()
                return False
            wanted, self._pending, self._busy = self._wanted, False, True
            reapply, self._reapply = self._reapply, False
        try:
            if wanted is not None:
                self._sync(wanted, reapply=reapply)
        except Exception:  # a bug must not kill the worker and freeze the sink
            log.exception("%s sink: unexpected error", self._label)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return True

    def _sync(self, wanted: int, *, reapply: bool = False) -> None:
        if self._outcomes.latched():
            return
        try:
            current = self._client.listen_port()
            self._set_confirmed(current)
            if current == wanted and reapply:
                try:
                    confirmed = self._client.reapply_listen_port(wanted)
                except TorrentClientError:
                    with self._cond:  # not done: the next check tries again
                        self._reapply = True
                    raise
                self._set_confirmed(confirmed)
                log.info("%s listens on port %s again (tunnel changed)", self._label, confirmed)
                self._outcomes.succeeded(confirmed, previous=None)
                return
            if current == wanted:
                self._outcomes.succeeded(wanted, previous=None)
                return
            try:
                confirmed = self._client.set_listen_port(wanted)
            except (TorrentAuthError, TorrentBannedError):
                raise
            except TorrentClientError as exc:
                self._outcomes.failed(SyncState.OUT_OF_SYNC, exc, wanted)
                return
            self._set_confirmed(confirmed)
            self._outcomes.succeeded(confirmed, previous=current)
        except (TorrentAuthError, TorrentBannedError) as exc:
            self._outcomes.auth_failed(exc, wanted)
        except TorrentClientError as exc:
            self._outcomes.failed(SyncState.UNREACHABLE, exc, wanted)

    def _set_confirmed(self, port: int) -> None:
        # A client may report 0 (random port) or junk: only a valid port is "confirmed".
        with self._cond:
            self._confirmed = port if valid_port(port) else None

    def _confirmed_port(self) -> int | None:
        with self._cond:
            return self._confirmed

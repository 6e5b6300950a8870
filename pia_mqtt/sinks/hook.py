"""PORT_CHANGE_COMMAND: run the user's command at start, on a change and on a re-apply.

The command line is split like a shell would split it and run without a shell, with
``{port}`` replaced in the arguments and ``PIA_PORT``, ``PIA_OLD_PORT`` and
``PIA_PORT_REASON`` (``start``, ``changed``, ``reapplied``) in the environment.
Runs happen one at a time on a worker thread. When several changes pile up while a run is
in progress only the newest port runs next, with ``PIA_OLD_PORT`` set to the port the
command was last run for: a port that was already replaced is never handed out, and the
script still sees an unbroken old -> new chain.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pia_mqtt import redact
from pia_mqtt.checks import split_command  # shared with settings: check-config = run
from pia_mqtt.core.model import Event, EventKind, Inbox, Snapshot, valid_port
from pia_mqtt.settings import SECRET_FIELDS
from pia_mqtt.sinks import reaper
from pia_mqtt.sinks.hookrun import KEEP_BYTES, HookResult, collect, kill_group, not_started

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

log = logging.getLogger(__name__)

VARIABLE = "PORT_CHANGE_COMMAND"
# The daemon's own secrets are not the hook's business.
HIDDEN_ENV = frozenset(name.upper() for name in SECRET_FIELDS)
LOG_OUTPUT_LIMIT = 4000
EVENT_OUTPUT_LIMIT = 1000
# Shutdown gives every close about 0.7 s (core/closing.py, 2 s in all): a running hook
# gets this long, then its process group is killed, so no hook outlives the daemon.
_CLOSE_GRACE = 0.3


# PIA_PORT_REASON values.
START = "start"
CHANGED = "changed"
REAPPLIED = "reapplied"


@dataclass(frozen=True)
class _Run:
    """One queued run: the port, PIA_OLD_PORT as known when queued, PIA_PORT_REASON."""

    port: int
    old: int | None
    reason: str


class HookSink:
    """Runs PORT_CHANGE_COMMAND for every new port (a Sink named ``hook``)."""

    name = "hook"

    def __init__(
        self,
        command_line: str,
        inbox: Inbox,
        *,
        timeout: float,
        clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._argv = split_command(command_line)
        reaper.install()  # PID 1 only: what a command backgrounds must not stay a zombie
        self._inbox = inbox
        self._timeout = timeout
        self._clock = clock
        # Passing the daemon's environment on is the point of this read: scripts expect PATH etc.
        base = os.environ if environ is None else environ
        self._env = {k: v for k, v in base.items() if k.upper() not in HIDDEN_ENV}
        self._cond = threading.Condition()
        self._accepted: int | None = None  # engine thread only
        self._epoch: int | None = None  # engine thread only: the tunnel_epoch last seen
        self._pending: _Run | None = None
        self._last_run: int | None = None
        self._busy = self._stopping = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._work, name="pia-mqtt-hook", daemon=True)
        self._thread.start()

    @property
    def check_interval(self) -> float | None:
        """The hook has nothing to check periodically."""
        return None

    def publish(self, snapshot: Snapshot) -> None:
        """Queue a run at start, when the port changes, and when it is re-applied.

        DESIGN's rule: ``start`` once a port is bound (``PIA_OLD_PORT`` = the port before
        the restart, empty only on a first ever start), ``changed`` when the number
        changes, ``reapplied`` when the tunnel changed and the same port was applied again.
        """
        port = snapshot.port
        if not valid_port(port):
            return
        assert isinstance(port, int)  # noqa: S101 - narrowed by valid_port for mypy
        epoch, self._epoch = self._epoch, snapshot.tunnel_epoch
        if self._accepted is None:
            run = _Run(port, snapshot.previous_port, START)
        elif port != self._accepted:
            run = _Run(port, None, CHANGED)
        elif epoch is not None and snapshot.tunnel_epoch != epoch:
            run = _Run(port, port, REAPPLIED)
        else:
            return
        self._accepted = port
        with self._cond:
            pending = self._pending
            if pending is not None and pending.reason == START:
                # Not run yet: the first run stays "start", for the newest port.
                run = _Run(port, pending.old, START)
            self._pending = run
            self._cond.notify_all()

    def event(self, event: Event) -> None:
        """Events do not trigger the hook."""

    def check(self, snapshot: Snapshot) -> None:
        """Nothing to check."""

    def drain(self, timeout: float) -> bool:
        """Wait until queued runs finished (for ``pia-mqtt once``); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        """Drop queued runs, give a running command a moment, then kill it and stop."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(timeout=_CLOSE_GRACE)
        if self._thread.is_alive():
            with self._cond:
                proc = self._proc
            if proc is not None:
                log.warning("stopping: killing %s, still running", VARIABLE)
                kill_group(proc)
            self._thread.join(timeout=_CLOSE_GRACE)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._pending is not None)
                if self._stopping:
                    return
                run, self._pending = self._pending, None
                last, self._busy = self._last_run, True
            try:
                if run is not None:
                    # Changes that piled up during a run: the script sees an unbroken
                    # old -> new chain (the port it last ran for is the old one).
                    old = last if run.reason == CHANGED and last is not None else run.old
                    if run.reason == CHANGED and run.port == last:
                        continue  # a change and its undo while busy: nothing new to run
                    self._last_run = run.port
                    self._report(run, old, self._run(run.port, old, run.reason))
            except Exception:
                log.exception("%s: unexpected failure of the hook worker", VARIABLE)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, port: int, old: int | None, reason: str) -> HookResult:
        argv = [arg.replace("{port}", str(port)) for arg in self._argv]
        env = {
            **self._env,
            "PIA_PORT": str(port),
            "PIA_OLD_PORT": str(old or ""),
            "PIA_PORT_REASON": reason,
        }
        program = argv[0]
        log.info("running %s %s for port %s (old port %s)", VARIABLE, program, port, old or "-")
        try:
            with reaper.spawning() as running:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
                running.add(proc.pid)
        except FileNotFoundError:
            return not_started(
                "not_found",
                f"{program!r} (or its #! interpreter) not found: give {VARIABLE} a full "
                "path or a command on PATH (for shell syntax use sh -c '...')",
            )
        except PermissionError:
            return not_started(
                "not_executable",
                f"{program!r} is not executable: chmod +x "
                f"it or start {VARIABLE} with its interpreter",
            )
        except OSError as exc:
            return not_started("error", f"cannot run {program!r}: {redact.describe(exc)}")
        with self._cond:
            self._proc = proc
        try:
            return collect(proc, program, self._timeout)
        finally:
            with self._cond:
                self._proc = None
            reaper.finished(proc.pid)

    def _report(self, run: _Run, old: int | None, result: HookResult) -> None:
        port = run.port
        level = logging.INFO if result.ok else logging.WARNING
        log.log(level, "%s for port %s: %s", VARIABLE, port, result.detail)
        if result.output:
            log.log(level, "%s output: %s", VARIABLE, result.output[-LOG_OUTPUT_LIMIT:])
        data: dict[str, object] = {
            "old_port": old,
            "port_reason": run.reason,
            "exit_code": result.exit_code,
            "reason": result.reason,
            "output": result.output[-EVENT_OUTPUT_LIMIT:],
            "output_truncated": len(result.output) > EVENT_OUTPUT_LIMIT
            or result.output_bytes > KEEP_BYTES,
        }
        kind = EventKind.HOOK_RAN if result.ok else EventKind.HOOK_FAILED
        message = f"{VARIABLE} for port {port}: {result.detail}"
        self._inbox.emit(Event(kind, self._clock(), message, port=port, data=data))

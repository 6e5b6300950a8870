"""Running one PORT_CHANGE_COMMAND process: collecting its output tail and its outcome.

The hook sink (``hook.py``) decides when and with what to run; this module waits for the
process (and only the process: not the background children that inherited its pipe),
keeps the last output bytes, kills its process group on a timeout and says what happened.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from pia_mqtt import redact

KEEP_BYTES = 16 * 1024


@dataclass(frozen=True)
class HookResult:
    """One run: ``exit_code`` is None when it never started or had to be killed."""

    exit_code: int | None
    reason: str  # ok, exit_status, killed, timeout, not_found, not_executable, error
    detail: str
    output: str
    output_bytes: int

    @property
    def ok(self) -> bool:
        """Whether the command ran and exited with status 0."""
        return self.reason == "ok"


def not_started(reason: str, detail: str) -> HookResult:
    """A run that never started: no exit code, no output."""
    return HookResult(None, reason, detail, "", 0)


def collect(proc: subprocess.Popen[bytes], program: str, timeout: float) -> HookResult:
    """Wait for ``proc`` (at most ``timeout`` seconds, then kill it) and say how it ended."""
    tail, total, timed_out = _read_until_exit(proc, timeout)
    if timed_out:
        kill_group(proc)
    code = proc.wait()
    output = redact.redact(tail.decode("utf-8", errors="replace")).strip()
    if timed_out:
        detail = f"{program!r} did not finish within {timeout:g} s and was killed"
        return HookResult(None, "timeout", detail, output, total)
    if code < 0:
        detail = f"{program!r} was killed by {_signal_name(-code)}"
        return HookResult(code, "killed", detail, output, total)
    if code:
        return HookResult(
            code, "exit_status", f"{program!r} exited with status {code}", output, total
        )
    return HookResult(0, "ok", f"{program!r} exited with status 0", output, total)


def _read_until_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, int, bool]:
    """Keep the last output bytes until the process exits; True if ``timeout`` ran out.

    Waits on the pipe and on a pidfd together: a background child that inherited the pipe
    must not hold the run open after the command itself has exited.
    """
    assert proc.stdout is not None  # noqa: S101 - Popen was given stdout=PIPE
    fd = proc.stdout.fileno()
    tail = bytearray()
    total = 0
    deadline = time.monotonic() + timeout
    pidfd = _pidfd(proc.pid)
    pipe_open, exited = True, False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            while pipe_open or not exited:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return bytes(tail), total, proc.poll() is None
                # Once it exited, take only what is already there; without a pidfd, look
                # at the process every 0.2 s.
                wait = 0 if exited else remaining if pidfd is not None else min(remaining, 0.2)
                ready = {key.fd for key, _ in selector.select(wait)}
                if fd in ready:
                    chunk = os.read(fd, 65536)
                    total += len(chunk)
                    tail += chunk
                    del tail[:-KEEP_BYTES]
                    if not chunk:
                        selector.unregister(fd)
                        pipe_open = False
                elif exited:
                    break
                if not exited and (pidfd in ready or (pidfd is None and proc.poll() is not None)):
                    exited = True
                    if pidfd is not None:
                        selector.unregister(pidfd)
            return bytes(tail), total, False
    finally:
        proc.stdout.close()
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's whole process group (it runs in a session of its own)."""
    if proc.returncode is not None:
        return  # already reaped: its pid (and group id) may belong to someone else now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

"""PORT_CHANGE_COMMAND, run for real: a script records its argv and environment."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, Snapshot, Status
from pia_mqtt.errors import ConfigError
from pia_mqtt.sinks import hookrun
from pia_mqtt.sinks.hook import HookSink
from tests.fixtures.common import RecordingInbox, eventually

T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
PY = sys.executable

RECORDER = """\
import json, os, pathlib, subprocess, sys, time
log = pathlib.Path(sys.argv[1])
port = os.environ["PIA_PORT"]
record = {
    "argv": sys.argv[2:],
    "PIA_PORT": port,
    "PIA_OLD_PORT": os.environ.get("PIA_OLD_PORT"),
    "PIA_PORT_REASON": os.environ.get("PIA_PORT_REASON"),
    "PIA_PASS": os.environ.get("PIA_PASS"),
    "KEPT": os.environ.get("KEPT"),
}
with log.open("a") as out:
    out.write(json.dumps(record) + "\\n")
mode = os.environ.get("HOOK_MODE", "")
if mode == "hang":
    child = subprocess.Popen(["sleep", "60"])
    (log.parent / "child.pid").write_text(str(child.pid))
    time.sleep(60)
if mode == "background":
    child = subprocess.Popen(["sleep", "60"])  # inherits stdout and never closes it
    (log.parent / "child.pid").write_text(str(child.pid))
if mode == "hold" and port == os.environ["HOLD_PORT"]:
    while not (log.parent / "release").exists():
        time.sleep(0.01)
if mode == "noisy":
    print("x" * 5000, flush=True)
print("set port", port, os.environ.get("SAY", ""), flush=True)
print("to stderr too", file=sys.stderr)
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
"""


def clock() -> datetime:
    """Frozen time: events compare whole."""
    return T0


def snap(port: int | None, *, previous: int | None = None, epoch: int = 0) -> Snapshot:
    """Build a snapshot as the engine would publish it."""
    return Snapshot(
        status=Status.ACTIVE,
        updated_at=T0,
        port=port,
        previous_port=previous,
        tunnel_epoch=epoch,
    )


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """Write the recording hook script."""
    path = tmp_path / "record.py"
    path.write_text(RECORDER)
    return path


def make_hook(
    script: Path, *, timeout: float = 20.0, extra: str = "", **env: str
) -> tuple[HookSink, RecordingInbox, Path]:
    """Build a HookSink running the recorder; return it, its inbox and the calls file."""
    inbox = RecordingInbox()
    log = script.parent / "calls.jsonl"
    line = f"{shlex.quote(PY)} {shlex.quote(str(script))} {shlex.quote(str(log))} --port={{port}} {extra}"
    environ = {"PATH": os.environ["PATH"], "PIA_PASS": "pia-secret-pass", "KEPT": "yes", **env}
    return HookSink(line, inbox, timeout=timeout, clock=clock, environ=environ), inbox, log


def calls(log: Path) -> list[dict[str, object]]:
    """Every call the recorder wrote so far."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def ran(port: int, old: int | None, output: str, reason: str = "start") -> Event:
    """Build the event of a successful run."""
    return Event(
        EventKind.HOOK_RAN,
        T0,
        f"PORT_CHANGE_COMMAND for port {port}: {PY!r} exited with status 0",
        port=port,
        data={
            "old_port": old,
            "port_reason": reason,
            "exit_code": 0,
            "reason": "ok",
            "output": output,
            "output_truncated": False,
        },
    )


def test_runs_with_the_port_in_arguments_and_environment(script: Path) -> None:
    """{port} is substituted, PIA_PORT set, PIA_OLD_PORT empty the first time."""
    hook, inbox, log = make_hook(script, extra="'two words' {port}x")
    hook.publish(snap(51000))
    assert hook.drain(20)
    hook.close()
    assert calls(log) == [
        {
            "argv": ["--port=51000", "two words", "51000x"],
            "PIA_PORT": "51000",
            "PIA_OLD_PORT": "",
            "PIA_PORT_REASON": "start",
            "PIA_PASS": None,
            "KEPT": "yes",
        }
    ]
    assert inbox.snapshot() == ([], [ran(51000, None, "set port 51000 \nto stderr too")])


def test_next_port_gets_the_old_one_and_the_same_port_runs_nothing(script: Path) -> None:
    """A change passes PIA_OLD_PORT; publishing the same port (or none) again does not run."""
    hook, inbox, log = make_hook(script)
    hook.publish(snap(51000))
    assert hook.drain(20)
    for snapshot in (snap(51000), snap(None), snap(0), snap(51000), snap(52000), snap(52000)):
        hook.publish(snapshot)
    assert hook.drain(20)
    hook.close()
    assert [(c["PIA_PORT"], c["PIA_OLD_PORT"]) for c in calls(log)] == [
        ("51000", ""),
        ("52000", "51000"),
    ]
    _, events = inbox.snapshot()
    assert events == [
        ran(51000, None, "set port 51000 \nto stderr too"),
        ran(52000, 51000, "set port 52000 \nto stderr too", "changed"),
    ]


@pytest.mark.parametrize(("previous", "old"), [(51000, "51000"), (50000, "50000"), (None, "")])
def test_start_reason_and_old_port_from_before_the_restart(
    script: Path, previous: int | None, old: str
) -> None:
    """The first run of a process is ``start`` with PIA_OLD_PORT remembered across restarts."""
    hook, _, log = make_hook(script)
    hook.publish(snap(51000, previous=previous))
    assert hook.drain(20)
    hook.close()
    assert [(c["PIA_PORT"], c["PIA_OLD_PORT"], c["PIA_PORT_REASON"]) for c in calls(log)] == [
        ("51000", old, "start")
    ]


def test_a_reapply_runs_the_hook_again_with_the_same_port(script: Path) -> None:
    """A new tunnel_epoch (same port) runs ``reapplied`` with PIA_OLD_PORT = PIA_PORT.

    An ordinary republish of the same snapshot does not run it.
    """
    hook, inbox, log = make_hook(script)
    hook.publish(snap(51000))
    assert hook.drain(20)
    hook.publish(snap(51000))
    hook.publish(snap(51000, epoch=1))
    assert hook.drain(20)
    hook.publish(snap(51000, epoch=1))
    hook.publish(snap(52000, epoch=1))
    assert hook.drain(20)
    hook.close()
    assert [(c["PIA_PORT"], c["PIA_OLD_PORT"], c["PIA_PORT_REASON"]) for c in calls(log)] == [
        ("51000", "", "start"),
        ("51000", "51000", "reapplied"),
        ("52000", "51000", "changed"),
    ]
    _, events = inbox.snapshot()
    assert [e.data["port_reason"] for e in events] == ["start", "reapplied", "changed"]


def test_changes_that_pile_up_run_only_the_newest(script: Path) -> None:
    """While a run is busy, B then C arrive: C runs next with PIA_OLD_PORT=A; B never."""
    hook, _, log = make_hook(script, HOOK_MODE="hold", HOLD_PORT="40000")
    hook.publish(snap(40000))
    eventually(partial(calls, log))
    hook.publish(snap(40001))
    hook.publish(snap(40002))
    (script.parent / "release").touch()
    assert hook.drain(20)
    hook.close()
    assert [(c["PIA_PORT"], c["PIA_OLD_PORT"]) for c in calls(log)] == [
        ("40000", ""),
        ("40002", "40000"),
    ]


def test_non_zero_exit_is_a_hook_failed_event_with_output(script: Path) -> None:
    """Exit status 3: HOOK_FAILED carrying the status and the output."""
    hook, inbox, _ = make_hook(script, HOOK_EXIT="3")
    hook.publish(snap(51500))
    assert hook.drain(20)
    hook.close()
    _, events = inbox.snapshot()
    assert events == [
        Event(
            EventKind.HOOK_FAILED,
            T0,
            f"PORT_CHANGE_COMMAND for port 51500: {PY!r} exited with status 3",
            port=51500,
            data={
                "old_port": None,
                "port_reason": "start",
                "exit_code": 3,
                "reason": "exit_status",
                "output": "set port 51500 \nto stderr too",
                "output_truncated": False,
            },
        )
    ]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_timeout_kills_the_whole_process_group(script: Path) -> None:
    """A hook that hangs is killed with its children at the timeout: HOOK_FAILED timeout."""
    hook, inbox, log = make_hook(script, timeout=0.5, HOOK_MODE="hang")
    hook.publish(snap(52500))
    assert hook.drain(20)
    hook.close()
    child = int((log.parent / "child.pid").read_text())
    eventually(partial(_gone, child))
    _, events = inbox.snapshot()
    assert [(e.kind, e.message, e.data["reason"], e.data["exit_code"]) for e in events] == [
        (
            EventKind.HOOK_FAILED,
            f"PORT_CHANGE_COMMAND for port 52500: {PY!r} did not finish within 0.5 s and was killed",
            "timeout",
            None,
        )
    ]


def test_missing_executable_is_reported_naming_the_variable(tmp_path: Path) -> None:
    """A program that does not exist: HOOK_FAILED not_found naming PORT_CHANGE_COMMAND."""
    inbox = RecordingInbox()
    missing = tmp_path / "nope.sh"
    hook = HookSink(f"{missing} {{port}}", inbox, timeout=5, clock=clock)
    hook.publish(snap(53000))
    assert hook.drain(20)
    hook.close()
    _, events = inbox.snapshot()
    assert events == [
        Event(
            EventKind.HOOK_FAILED,
            T0,
            f"PORT_CHANGE_COMMAND for port 53000: {str(missing)!r} (or its #! interpreter) not found: give "
            "PORT_CHANGE_COMMAND a full path or a command on PATH (for shell syntax use "
            "sh -c '...')",
            port=53000,
            data={
                "old_port": None,
                "port_reason": "start",
                "exit_code": None,
                "reason": "not_found",
                "output": "",
                "output_truncated": False,
            },
        )
    ]


def test_file_that_is_not_executable_is_reported(tmp_path: Path) -> None:
    """A script without the x bit: HOOK_FAILED not_executable."""
    inbox = RecordingInbox()
    path = tmp_path / "plain.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o644)
    hook = HookSink(str(path), inbox, timeout=5, clock=clock)
    hook.publish(snap(53500))
    assert hook.drain(20)
    hook.close()
    _, events = inbox.snapshot()
    assert [(e.kind, e.data["reason"]) for e in events] == [
        (EventKind.HOOK_FAILED, "not_executable")
    ]
    assert events[0].message.endswith(
        "is not executable: chmod +x it or start PORT_CHANGE_COMMAND with its interpreter"
    )


def test_long_output_is_truncated_to_its_end_in_the_event(script: Path) -> None:
    """5000 characters of output: the event keeps the last 1000 and says it truncated."""
    hook, inbox, _ = make_hook(script, HOOK_MODE="noisy")
    hook.publish(snap(54000))
    assert hook.drain(20)
    hook.close()
    _, events = inbox.snapshot()
    expected = ("x" * 5000 + "\nset port 54000 \nto stderr too")[-1000:]
    assert (events[0].data["output"], events[0].data["output_truncated"]) == (expected, True)


def test_known_secrets_in_the_output_are_masked(script: Path) -> None:
    """A registered secret printed by the hook never reaches the event."""
    redact.register("hook-printed-secret")
    hook, inbox, _ = make_hook(script, SAY="token hook-printed-secret")
    hook.publish(snap(54500))
    assert hook.drain(20)
    hook.close()
    _, events = inbox.snapshot()
    assert events[0].data["output"] == "set port 54500 token ***\nto stderr too"


def test_close_kills_a_running_hook(script: Path) -> None:
    """Shutdown does not wait for a hanging hook: close() kills it and returns."""
    hook, inbox, log = make_hook(script, HOOK_MODE="hang")
    hook.publish(snap(55000))
    eventually((log.parent / "child.pid").exists)
    hook.close()
    _, events = inbox.snapshot()
    assert [(e.kind, e.data["reason"], e.data["exit_code"]) for e in events] == [
        (EventKind.HOOK_FAILED, "killed", -9)
    ]


def test_command_line_that_cannot_be_split_is_a_config_error() -> None:
    """Unbalanced quotes or an empty command name PORT_CHANGE_COMMAND."""
    for line, problem in (
        (
            "echo 'oops",
            "PORT_CHANGE_COMMAND: cannot be split like a shell would: No closing quotation",
        ),
        ("  ", "PORT_CHANGE_COMMAND: is empty"),
    ):
        with pytest.raises(ConfigError) as caught:
            HookSink(line, RecordingInbox(), timeout=5, clock=clock)
        assert caught.value.problems == [problem]


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_background_child_holding_the_output_does_not_hold_the_run(
    script: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    """The command exits but leaves a child on its stdout: the run ends with the command.

    Also without pidfd support (kernels before 5.3), where the worker watches the process.
    """
    if not pidfd:
        monkeypatch.setattr(hookrun, "_pidfd", lambda _pid: None)
    hook, inbox, log = make_hook(script, timeout=60, HOOK_MODE="background")
    hook.publish(snap(56000))
    assert hook.drain(30)
    hook.close()
    child = int((log.parent / "child.pid").read_text())
    os.kill(child, signal.SIGKILL)
    _, events = inbox.snapshot()
    assert events == [ran(56000, None, "set port 56000 \nto stderr too")]

"""The README tells the truth: its settings, commands and examples match the code."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pia_mqtt.cli import COMMANDS
from pia_mqtt.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md")}


def _blocks(text: str, language: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)]


def _documented_variables() -> set[str]:
    names: set[str] = set()
    for line in README.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_setting_is_documented_in_the_readme() -> None:
    """Each environment variable the daemon reads appears in a README settings table."""
    fields = {name.upper() for name in Settings.model_fields}
    assert set() == fields - _documented_variables()


def test_the_readme_documents_no_setting_that_does_not_exist() -> None:
    """Each variable in the README's tables is read by the daemon (no stale names)."""
    fields = {name.upper() for name in Settings.model_fields}
    assert set() == _documented_variables() - fields


def test_every_command_is_documented_in_the_readme() -> None:
    """The Commands table lists every sub-command the CLI offers."""
    assert [] == [name for name in COMMANDS if f"`pia-mqtt {name}`" not in README]


@pytest.mark.parametrize(
    ("name", "text"), [("README.md", README), *DOCS.items()], ids=lambda v: str(v)[:20]
)
def test_yaml_and_json_examples_parse(name: str, text: str) -> None:
    """Every ```yaml and ```json example in the docs is valid (users copy-paste them)."""
    for block in _blocks(text, "yaml"):
        yaml.safe_load(block)
    for block in _blocks(text, "json"):
        json.loads(block)


def test_the_readme_data_file_example_has_the_keys_the_daemon_writes() -> None:
    """The PORT_DATA_FILE example shows exactly the keys portfiles.data_document writes."""
    from datetime import UTC, datetime

    from pia_mqtt.core.model import Snapshot, Status
    from pia_mqtt.sinks.portfiles import data_document

    example = next(json.loads(b) for b in _blocks(README, "json") if '"next_refresh"' in b)
    written = data_document(Snapshot(status=Status.ACTIVE, updated_at=datetime.now(UTC)), 900)
    assert sorted(written) == sorted(example)


# --- The README's two shell blocks: self-contained on a minimal Debian 12 -------------------
# scripts/readme-check.sh runs them for real in a debootstrap root; these tests check their
# shape on every run: each command a block runs is installed earlier in the same block.

MINBASE_COMMANDS = {"apt-get"}  # what `debootstrap --variant=minbase` has that blocks use
APT_COMMANDS = {"python3": "python3"}  # command -> the Debian package that provides it


def _shell_block(marker: str) -> str:
    blocks = [b for b in _blocks(README, "bash") if marker in b]
    assert len(blocks) == 1, f"README.md needs exactly one ```bash block with {marker!r}"
    return blocks[0]


def _commands(block: str) -> list[list[str]]:
    commands = []
    for line in block.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part)
            if words:
                commands.append(words)
    return commands


def _apt_packages(commands: list[list[str]]) -> set[str]:
    packages: set[str] = set()
    for words in commands:
        if words[:2] == ["apt-get", "install"]:
            packages |= {w for w in words[2:] if not w.startswith("-")}
    return packages


def _ci_apt_packages() -> set[str]:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ")
    packages: set[str] = set()
    for line in text.splitlines():
        if "apt-get install" in line:
            words = shlex.split(line.split("apt-get install", 1)[1].split(">", 1)[0])
            packages |= {w for w in words if not w.startswith("-")}
    return packages


@pytest.mark.parametrize("marker", ["pia-mqtt demo", "pytest"])
def test_each_readme_block_installs_every_command_it_runs(marker: str) -> None:
    """Every command in the block is in minbase, installed by its apt line, or in its venv."""
    commands = _commands(_shell_block(marker))
    assert commands[0] == ["apt-get", "update"]
    installed = _apt_packages(commands)
    venvs: list[str] = []
    missing = []
    for words in commands:
        program = words[0]
        if program in MINBASE_COMMANDS:
            continue
        if program in APT_COMMANDS and APT_COMMANDS[program] in installed:
            if words[1:3] == ["-m", "venv"]:
                assert "python3-venv" in installed, "python3 -m venv needs python3-venv"
                venvs.append(words[3])
            continue
        if any(program.startswith(f"{venv}/bin/") for venv in venvs):
            continue
        missing.append(" ".join(words))
    assert [] == missing


@pytest.mark.parametrize(("marker", "extra"), [("pia-mqtt demo", "demo"), ("pytest", "test")])
def test_each_readme_block_makes_its_venv_in_the_cache_folder(marker: str, extra: str) -> None:
    """The venv lives under ~/.cache (no pip outside a venv: Debian refuses it) and gets the extra."""
    commands = _commands(_shell_block(marker))
    venvs = [w[3] for w in commands if w[:3] == ["python3", "-m", "venv"]]
    installs = [
        w for w in commands if len(w) > 1 and w[0].endswith("/bin/pip") and w[1] == "install"
    ]
    assert (len(venvs), venvs[0].startswith("~/.cache/")) == (1, True)
    assert [w[0] for w in installs] == [f"{venvs[0]}/bin/pip"]
    assert any(w.startswith(".[") and extra in w for w in installs[0][2:])


def test_the_readme_test_block_installs_every_package_ci_installs() -> None:
    """The README's test command lists every Debian package .ci/run installs for the tests.

    Except debootstrap: it only builds the optional Debian 13 peers root (tests that need it
    skip without it, saying how to build it).
    """
    ci_only = {"debootstrap"}
    readme = _apt_packages(_commands(_shell_block("pytest")))
    assert set() == _ci_apt_packages() - ci_only - readme


def test_the_events_example_in_docs_mqtt_is_what_the_daemon_sends(
    pia_env: dict[str, str], mosquitto, recorder
) -> None:
    """`once` on a fresh install publishes a port_changed event shaped like docs/mqtt.md's."""
    events = recorder(mosquitto, "pia-mqtt/events")
    env = {"PATH": "/usr/bin:/bin", "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(mosquitto.port)}
    result = subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "once"], env=pia_env | env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sent = json.loads(events.wait_for("pia-mqtt/events").payload)
    example = json.loads(
        next(b for b in _blocks(DOCS["mqtt.md"], "json") if '"event": "port_changed"' in b)
    )

    def shape(event: dict[str, object]) -> dict[str, object]:
        # Values differ run to run (time, port, gateway); keys, types and wording do not.
        return {
            k: re.sub(r"\d+", "N", v) if isinstance(v, str) else type(v).__name__
            for k, v in event.items()
        }

    assert shape(example) == shape(sent)

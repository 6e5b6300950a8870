"""The README tells the truth: its settings, commands and examples match the code."""

from __future__ import annotations

import json
import re
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

"""The package layout the README's map describes: folders per outside system, one-way imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pia_mqtt"
README = PACKAGE.parent / "README.md"
# What core/ may import from the package: itself and the leaves below it.
CORE_MAY_IMPORT = ("pia_mqtt.core", "pia_mqtt.errors", "pia_mqtt.redact")


def _package_imports(path: Path) -> set[str]:
    """Every ``pia_mqtt...`` module a file imports (absolute imports only: the house style)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("pia_mqtt")}


def test_core_imports_no_outside_system() -> None:
    """core/ decides; it imports only itself, errors and redact (never pia/, mqtt/, ...)."""
    offending = {
        f"{path.name}: {name}"
        for path in sorted((PACKAGE / "core").glob("*.py"))
        for name in _package_imports(path)
        if not name.startswith(CORE_MAY_IMPORT) and name != "pia_mqtt"
    }
    assert set() == offending


def test_only_wiring_and_cli_import_concrete_sinks_and_controllers() -> None:
    """Outside-system folders never import each other's sinks; wiring/cli build them."""
    builders = {"wiring.py", "cli.py"}
    wired = ("pia_mqtt.mqtt.sink", "pia_mqtt.sinks.", "pia_mqtt.torrent.sink", "pia_mqtt.http.")
    offending = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in builders and path.parent.name != "simulator"
        for name in _package_imports(path)
        if name.startswith(wired) and not name.startswith(f"pia_mqtt.{path.parent.name}.")
    }
    assert set() == offending


def test_top_level_stays_small_and_the_readme_map_lists_every_folder() -> None:
    """At most about ten top-level modules; each folder has a row in the README's map."""
    modules = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Development") :]
    mapped = set(re.findall(r"^\s*\| `([a-z_]+)/` \|", section, flags=re.MULTILINE))
    assert len(modules) <= 10, sorted(modules)
    assert folders == mapped

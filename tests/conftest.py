"""Shared fixtures. Each peer's fixtures live in their own plugin module under fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.pia",
    "tests.fixtures.mosquitto",
    "tests.fixtures.qbittorrent",
    "tests.fixtures.peersroot",
    "tests.fixtures.transmission",
    "tests.fixtures.deluge",
]

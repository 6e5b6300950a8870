"""Checks of single configuration values (pia_mqtt.checks), as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pia_mqtt import checks


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("milano402", True),
        ("sim-gateway-1", True),
        ("my_service", True),  # Docker service names
        ("broker.lan.", True),
        ("café.lan", True),  # an internationalised name (xn--caf-dma.lan)
        ("milano..402", False),
        ("broker..lan", False),
        ("-x", False),
        ("x-", False),
        ("a" * 64, False),
        ("host:1883", False),
        ("", False),
    ],
)
def test_host_names(host: str, ok: bool) -> None:
    """Labels of 1-63 characters, no empty label, no leading or trailing hyphen."""
    assert ok == checks.is_hostname(host)


@pytest.mark.parametrize(
    ("variable", "url", "problem"),
    [
        ("QBITTORRENT_HOST", "http://qbittorrent:8080", None),
        ("GLUETUN_CONTROL_URL", "http://[::1]:8000", None),
        (
            "GLUETUN_CONTROL_URL",
            "http://[::1",
            (
                "GLUETUN_CONTROL_URL: must be an http:// or https:// URL such as "
                "http://gluetun:8000 (it does not parse as a URL)"
            ),
        ),
        (
            "QBITTORRENT_HOST",
            "http://qbt:99999",
            (
                "QBITTORRENT_HOST: must be an http:// or https:// URL such as "
                "http://qbittorrent:8080 (it does not parse as a URL)"
            ),
        ),
        (
            "QBITTORRENT_HOST",
            "http://qbt..lan:8080",
            (
                "QBITTORRENT_HOST: 'qbt..lan' is not a valid host name or IP address "
                "(such as http://qbittorrent:8080)"
            ),
        ),
    ],
)
def test_urls(variable: str, url: str, problem: str | None) -> None:
    """A URL problem names the variable and gives that variable's own example."""
    assert problem == checks.url_problem(variable, url)


def test_output_files_sharing_one_path_are_named_in_pairs(tmp_path: Path) -> None:
    """PORT_FILE = STATE_FILE (through a symlinked folder, too) is one problem naming both."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    paths = {
        "PORT_FILE": tmp_path / "link" / "x.json",
        "PORT_DATA_FILE": tmp_path / "data.json",
        "STATE_FILE": tmp_path / "real" / "x.json",
    }
    assert [
        (
            f"PORT_FILE and STATE_FILE: both are {paths['STATE_FILE']}; give each its own file "
            "(one would overwrite the other)"
        )
    ] == checks.same_file_problems(paths)

"""`pia-mqtt check-config` with GLUETUN_CONTROL_URL: one GET to gluetun, after validation.

The settings are still validated without the network and a bad configuration still exits
2 before anything is sent; a valid one exits 0 whatever gluetun answers (the section
reports, it does not judge the settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fake_gluetun import GET_PF, Behaviour, FakeGluetun
from tests.fixtures.common import free_port

KEY = "check-config-gluetun-key-5"


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYENV_ROOT")}
    return subprocess.run(
        [sys.executable, "-m", "pia_mqtt", "check-config"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _follow_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PORT_SOURCE": "gluetun",
        "GLUETUN_CONTROL_URL": url,
        "PORT_FILE": str(tmp_path / "pia-port.txt"),
        **extra,
    }


def _section(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("gluetun (one GET"))
    return lines[start:]


def test_follow_mode_reports_that_gluetun_answers_the_key_works_and_its_port(
    tmp_path: Path,
) -> None:
    """A good key: the section says gluetun answers, the key is accepted and the port."""
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING, api_key=KEY) as gluetun:
        gluetun.forward(43117)
        result = _check_config(_follow_env(gluetun.url, tmp_path, GLUETUN_API_KEY=KEY))
    assert 0 == result.returncode, result.stderr
    assert json.loads(result.stdout)["GLUETUN_API_KEY"] == "***"
    assert _section(result.stderr) == [
        f"gluetun (one GET {gluetun.url}/v1/portforward; nothing is changed):",
        "  answers: yes (reply port+ports)",
        "  API key: accepted (GLUETUN_API_KEY)",
        "  forwards now: port 43117",
        "  PORT_SOURCE=gluetun: pia-mqtt will hand port 43117 on.",
    ]
    assert gluetun.requests == [GET_PF]
    assert KEY not in result.stdout + result.stderr


def test_wrong_key_is_reported_with_the_role_to_fix_and_still_exits_0(tmp_path: Path) -> None:
    """401: "API key: refused" and the message naming the role's route; exit stays 0."""
    with FakeGluetun(Behaviour.TAGGED, api_key=KEY) as gluetun:
        result = _check_config(_follow_env(gluetun.url, tmp_path, GLUETUN_API_KEY="nope-x"))
    section = _section(result.stderr)
    assert 0 == result.returncode
    assert section[1:3] == ["  answers: yes", "  API key: refused"]
    assert 'whose routes include "GET /v1/portforward"' in section[3]
    assert gluetun.requests == [GET_PF]


def test_unreachable_gluetun_is_reported_and_several_ports_name_the_first(
    tmp_path: Path,
) -> None:
    """Nothing listening: "answers: no"; gluetun with two ports: the first is the one used."""
    down = _check_config(_follow_env(f"http://127.0.0.1:{free_port()}", tmp_path))
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as gluetun:
        gluetun.forward(40001, 40002)
        several = _check_config(_follow_env(gluetun.url, tmp_path))
    assert (0, 0) == (down.returncode, several.returncode)
    assert _section(down.stderr)[1] == "  answers: no"
    assert "  forwards now: ports 40001, 40002 (pia-mqtt uses the first, 40001)" in (
        _section(several.stderr)
    )


def test_push_mode_never_puts_and_warns_when_gluetun_forwards_itself(
    tmp_path: Path,
) -> None:
    """PORT_SOURCE=pia: only a GET; gluetun forwarding a port itself is named as two ports."""
    with FakeGluetun(Behaviour.DEV_SELF_FORWARDING) as gluetun:
        gluetun.forward(51413)
        env = {
            "PIA_USER": "p1234567",
            "PIA_PASS": "secret-pass-for-check",
            "GLUETUN_CONTROL_URL": gluetun.url,
            "PORT_FILE": str(tmp_path / "pia-port.txt"),
        }
        result = _check_config(env)
    assert 0 == result.returncode, result.stderr
    assert _section(result.stderr)[-1] == (
        "  PORT_SOURCE=pia, but gluetun forwards port 51413 itself: running both makes two "
        "PIA ports; set VPN_PORT_FORWARDING=on in gluetun and PORT_SOURCE=gluetun here."
    )
    assert gluetun.requests == [GET_PF]


def test_invalid_settings_exit_2_without_asking_gluetun(tmp_path: Path) -> None:
    """A configuration error still exits 2 at once, and gluetun hears nothing."""
    with FakeGluetun() as gluetun:
        env = {"GLUETUN_CONTROL_URL": gluetun.url, "PORT_FILE": str(tmp_path / "p.txt")}
        result = _check_config(env)  # PORT_SOURCE=pia without PIA_USER/PIA_PASS
    assert 2 == result.returncode
    assert "gluetun (one GET" not in result.stderr
    assert gluetun.requests == []

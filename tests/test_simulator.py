"""The simulator's standalone mode: processes sharing a folder act as one PIA."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import PiaRefusedError
from pia_mqtt.pia.client import PiaClient
from tests.fixtures.pia import SIM_PASS, SIM_USER

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def start_simulator(tmp_path: Path) -> Iterator[Callable[..., dict[str, Any]]]:
    """Start ``python -m pia_mqtt.simulator`` processes; SIGTERM them afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> dict[str, Any]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pia_mqtt.simulator", "--dir", str(tmp_path / "sim"), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        ready: dict[str, Any] = json.loads(proc.stdout.readline())
        return ready

    yield start
    codes = []
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        codes.append(proc.wait(timeout=10))
        assert proc.stdout is not None
        proc.stdout.close()
    assert [0] * len(procs) == codes


def test_processes_sharing_a_folder_accept_each_others_signatures(
    start_simulator: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token from one process, signature from another, bound on a third; noforeign refuses."""
    first = start_simulator("--gateway", "127.0.0.1:0:gw-a")
    second = start_simulator("--no-token", "--gateway", "127.0.0.1:0:gw-b:nosan")
    strict = start_simulator("--no-token", "--gateway", "127.0.0.1:0:gw-c:noforeign")
    assert (first["ca_file"], None) == (second["ca_file"], second["token_url"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", first["token_ca_file"])

    def client(ready: dict[str, Any]) -> tuple[PiaClient, GatewayTarget]:
        gateway = ready["gateways"][0]
        pia = PiaClient(
            username=SIM_USER,
            password=SIM_PASS,
            token_url=first["token_url"],
            ca_file=Path(first["ca_file"]),
            gateway_port=gateway["port"],
        )
        return pia, GatewayTarget(gateway["host"], gateway["cn"])

    (pia_a, gw_a), (pia_b, gw_b), (pia_c, gw_c) = client(first), client(second), client(strict)
    try:
        lease = pia_b.get_signature(gw_b, pia_a.get_token())
        pia_a.bind(gw_a, lease)
        with pytest.raises(PiaRefusedError) as caught:
            pia_c.bind(gw_c, lease)
        assert caught.value.reason == "bad_signature"
    finally:
        for pia in (pia_a, pia_b, pia_c):
            pia.close()

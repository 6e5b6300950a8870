"""``pia-mqtt demo``: the whole loop against the built-in PIA simulator, no account needed.

The simulator (token endpoint + one gateway, real HTTPS with a PIA-like CA) runs in this
process on 127.0.0.1; the port files go to a local folder. qBittorrent, MQTT and the hook
are used exactly as configured in the environment, so a newcomer can point the demo at
their own broker and see the device appear in Home Assistant.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

from pydantic import SecretStr

from pia_mqtt import redact
from pia_mqtt.settings import Settings

DEMO_USER = "p0000000"


class DemoUnavailableError(RuntimeError):
    """The simulator's dependency (cryptography) is not installed."""


DEMO_PASSWORD = "demo-password"  # noqa: S105 - the simulator's own throw-away account


@contextlib.contextmanager
def demo_settings(settings: Settings, *, folder: Path, interval: int) -> Iterator[Settings]:
    """Start the simulator and yield settings that point the daemon at it."""
    try:
        from pia_mqtt.simulator.pia import PiaSimulator  # noqa: PLC0415 - cryptography only here
    except ImportError as exc:
        raise DemoUnavailableError(
            "the demo needs the 'demo' extra (cryptography): pip install 'pia-mqtt[demo]'"
        ) from exc

    folder.mkdir(parents=True, exist_ok=True)
    redact.register(DEMO_PASSWORD)
    with PiaSimulator(folder / "simulator", users={DEMO_USER: DEMO_PASSWORD}) as sim:
        gateway = sim.add_gateway(cn="demo-gateway")
        # requests reads the token endpoint's trust store from here (demo only).
        os.environ["REQUESTS_CA_BUNDLE"] = str(sim.token_ca_file)
        overrides = {
            "pia_user": DEMO_USER,
            "pia_pass": SecretStr(DEMO_PASSWORD),
            "pia_token_url": sim.token_url,
            "pia_ca_cert": sim.ca_file,
            "pia_gateway": IPv4Address("127.0.0.1"),
            "pia_gateway_port": gateway.port,
            "pia_hostname": None,
            "port_forward_refresh_interval": interval,
            "port_file": folder / "pia-port.txt",
            "port_data_file": folder / "pia-port-data.json",
            "state_file": folder / "pia-lease.json",
        }
        print(
            f"pia-mqtt demo: simulated PIA at {sim.token_url} and gateway 127.0.0.1:"
            f"{gateway.port}; files in {folder.resolve()}; keep-alive every {interval} s. "
            "Ctrl-C to stop.",
            file=sys.stderr,
        )
        yield settings.model_copy(update=overrides)

"""``python -m pia_mqtt.simulator``: the PIA look-alike as a process.

Standalone (network-namespace tests, the demo)::

    python -m pia_mqtt.simulator --dir D [--host H] [--token-port P] [--no-token]
        [--gateway HOST:PORT:CN[:nosan][:noforeign]]... [--users USER:PASS]...

prints one JSON line (token_url, ca_file, token_ca_file, gateways) when ready and serves
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pia_mqtt.simulator.pia import PiaSimulator

if TYPE_CHECKING:
    from types import FrameType


def _gateway_spec(text: str) -> dict[str, Any]:
    host, rest = text.split("]:", 1) if text.startswith("[") else text.split(":", 1)
    port, cn, *flags = rest.split(":")
    unknown = set(flags) - {"nosan", "noforeign"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown gateway flag(s) {sorted(unknown)}")
    return {
        "host": host.lstrip("["),
        "port": int(port),
        "cn": cn,
        "san": "nosan" not in flags,
        "accepts_foreign": "noforeign" not in flags,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; print one JSON line when ready."""
    parser = argparse.ArgumentParser(prog="python -m pia_mqtt.simulator")
    parser.add_argument("--dir", type=Path, required=True, help="CA material and certs")
    parser.add_argument("--host", default="127.0.0.1", help="token endpoint address")
    parser.add_argument("--token-port", type=int, default=0)
    parser.add_argument("--no-token", action="store_true", help="serve no token endpoint")
    parser.add_argument(
        "--gateway",
        type=_gateway_spec,
        action="append",
        default=[],
        metavar="HOST:PORT:CN[:nosan][:noforeign]",
    )
    parser.add_argument("--users", action="append", default=[], metavar="USER:PASS")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.users) or None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = PiaSimulator(args.dir, users=users, host=args.host, token_port=args.token_port)
    try:
        if not args.no_token:
            sim.start()
        for spec in args.gateway:
            sim.add_gateway(**spec)
        ready = {
            "token_url": None if args.no_token else sim.token_url,
            "ca_file": str(sim.ca_file),
            "token_ca_file": str(sim.token_ca_file),
            "gateways": [{"host": g.host, "port": g.port, "cn": g.cn} for g in sim.gateways],
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

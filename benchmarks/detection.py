"""Gateway detection time in the router-level VPN network of tests/test_netns_router.py.

``tests.netns.router_level`` builds client -> router -> "PIA server" (10.13.128.1, the
simulator's gateway on 19999) -> "public" (198.18.0.100, the hop probe's target), all in
namespaces made here and removed afterwards. In the client namespace ``GatewayFinder.find``
runs as ``pia-mqtt`` wires it (no PIA_GATEWAY), timed from the call to the verified answer:

- hop probe: the router answers ICMP, so hop 2 is the gateway (2 s apart: routers
  rate-limit the ICMP errors they send to one host);
- sweep: the router drops ICMP (nftables), the hop probe hears nothing, and the sweep over
  every N (512 addresses, all silent but one) finds the server.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from benchmarks.observe import BenchError

if TYPE_CHECKING:
    from pathlib import Path

    from benchmarks.scenarios import Results

TIMED = """import json, sys, time
from pathlib import Path
from pia_mqtt.gateway.finder import GatewayFinder
octets = range(0, 256) if sys.argv[3] == "sweep" else None
seconds, sources = [], []
for run in range(int(sys.argv[4])):
    # Routers send ICMP errors to one host at most once a second after a burst of 6
    # (icmp_ratelimit): back-to-back detections would starve the hop probe of answers.
    time.sleep(2.0 if run else 0)
    finder = GatewayFinder(configured=None, hostname=None, port=19999, ca_file=Path(sys.argv[1]),
                           probe_target=sys.argv[2], sweep_octets=octets)
    began = time.monotonic()
    target = finder.find()
    seconds.append(time.monotonic() - began)
    sources.append(target.source)
print(json.dumps({"seconds": seconds, "sources": sorted(set(sources))}))
"""


def detection_times(material: Path, folder: Path, runs: int, results: Results) -> None:
    """Time ``runs`` hop-probe detections, then ``max(1, runs // 2)`` sweeps."""
    import shutil  # noqa: PLC0415

    from tests.netns import (  # noqa: PLC0415
        PIA_SERVER,
        PUBLIC_TARGET,
        NetLab,
        drop_icmp,
        remove_stale_namespaces,
        router_level,
    )

    remove_stale_namespaces()
    sim_dir = folder / "sim"
    shutil.copytree(material, sim_dir, ignore=shutil.ignore_patterns("servers"))
    lab = NetLab("detect")
    try:
        net = router_level(lab)
        started = lab.start(
            net.server, "gateway",
            [sys.executable, "-m", "pia_mqtt.simulator", "--dir", str(sim_dir), "--no-token",
             "--gateway", f"{PIA_SERVER}:19999:bench-router"],
        )  # fmt: skip
        ca_file = json.loads(started.readline(timeout=30))["ca_file"]
        for kind, count, row, expected in (
            ("hop", runs, "detection: hop probe, router-level VPN", "hop 2 (traceroute)"),
            ("sweep", max(1, runs // 2), "detection: sweep 0-255, ICMP dropped", "sweep"),
        ):
            if kind == "sweep":
                drop_icmp(net.router)
            doc = net.client.python(TIMED, ca_file, PUBLIC_TARGET, kind, str(count), timeout=300)
            if doc["sources"] != [expected]:
                raise BenchError(f"{row}: found by {doc['sources']}, expected {expected}")
            for seconds in doc["seconds"]:
                results.add(row, seconds)
    finally:
        lab.close()

"""Router-level VPN and Multus: the tunnel is on the router, nothing on this host names it.

The network (``tests.netns.router_level``): client 192.168.50.10 -> router 192.168.50.1
(forwarding, its default route into the "tunnel") -> "PIA server" 10.13.128.1, running the
simulator's gateway on port 19999 and forwarding on -> "public" namespace holding
198.18.0.100, the address the hop probe sends toward (and, in the daemon tests, the token
endpoint). Every address exists only inside namespaces made here; no test resolves a name.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fixtures.common import eventually
from tests.fixtures.pia import SIM_PASS, SIM_USER
from tests.netns import (
    LAN_ROUTER,
    PIA_SERVER,
    PUBLIC_TARGET,
    NetLab,
    RouterLevel,
    child_env,
    drop_icmp,
    leftover_namespaces,
    remove_stale_namespaces,
    router_level,
)
from tests.test_netns import (
    alive,
    bound_on,
    detect_gateway_cli,
    ok_line,
    start_gateway,
    start_simulator,
    start_token_endpoint,
)
from tests.test_netns import daemon_env as netns_daemon_env

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.netns
_LABS = itertools.count(1)

CN = "toronto418"
# A sweep over N = 10..15 only: 12 addresses, 10.13.128.1 among them.
SMALL_SWEEP = "10-15"

DETECT = """import json, sys
from pathlib import Path
from pia_mqtt.gateway.finder import GatewayFinder
finder = GatewayFinder(configured=None, hostname=None, port=19999, ca_file=Path(sys.argv[1]),
                       probe_target=sys.argv[2], sweep_octets=None)
target = finder.find()
print(json.dumps({"target": [target.address, target.hostname, target.source],
                  "results": [[r.candidate.address, r.candidate.source, r.probe.verdict.value]
                              for r in finder.detect_all()]}))
"""


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Provide a NetLab whose namespaces and processes are all gone after the test."""
    remove_stale_namespaces()
    netlab = NetLab(f"r{next(_LABS)}")
    try:
        yield netlab
    finally:
        netlab.close()
        assert not leftover_namespaces(netlab.prefix)


@pytest.fixture
def sim_dir(tmp_path: Path, pia_ca_material: Path) -> Path:
    """Copy the simulator's CA and signing key, shared by every simulator of the test."""
    folder = tmp_path / "sim"
    shutil.copytree(pia_ca_material, folder, ignore=shutil.ignore_patterns("servers"))
    return folder


def row(report: str, address: str) -> str:
    """The report line for ``address``, its columns joined by single spaces."""
    return " ".join(ok_line(report, address).split())


def with_pia_server(lab: NetLab, sim_dir: Path, net: RouterLevel) -> Path:
    """Start the simulator's gateway on 10.13.128.1:19999 in the server namespace; its CA."""
    ready = start_gateway(lab, net.server, sim_dir, f"{PIA_SERVER}:19999:{CN}")
    return Path(ready["ca_file"])


def test_router_level_vpn_is_found_by_the_hop_probe(lab: NetLab, sim_dir: Path):
    """No PIA_GATEWAY, no tunnel here: the second hop (10.13.128.1) is the verified gateway.

    detect-gateway exits 0 and says where each candidate came from: the router as the
    default route (refused), the hop probe's hop 2, and what is derived from it.
    """
    net = router_level(lab)
    ca_file = with_pia_server(lab, sim_dir, net)

    report = detect_gateway_cli(
        net.client, ca_file, target=PUBLIC_TARGET, env={"GATEWAY_SWEEP": "off"}
    )

    assert f"hop 2 (traceroute) OK CN={CN}" in row(report, PIA_SERVER), report
    assert "default route (default dev eth0) refused" in row(report, LAN_ROUTER), report
    assert "derived from hop 2" in row(report, "10.13.0.1"), report
    note = f"(hop probe toward {PUBLIC_TARGET}: hops 1={LAN_ROUTER}, 2={PIA_SERVER} (reached))"
    assert note in report.splitlines(), report


def test_with_icmp_dropped_the_sweep_finds_it_and_detect_gateway_exits_1_without_it(
    lab: NetLab, sim_dir: Path
):
    """The router drops ICMP, so no hop answers: the (small) sweep is the last resort.

    Before the PIA server runs nothing verifies and detect-gateway exits 1, listing the
    sweep's result and the troubleshooting hints' commands; once it runs, the sweep finds
    10.13.128.1 and detect-gateway exits 0.
    """
    net = router_level(lab)
    drop_icmp(net.router)
    env = {"GATEWAY_SWEEP": SMALL_SWEEP}
    ca_dir = sim_dir / "pia-ca.crt"

    missing = detect_gateway_cli(net.client, ca_dir, target=PUBLIC_TARGET, env=env, code=1)
    ca_file = with_pia_server(lab, sim_dir, net)
    found = detect_gateway_cli(net.client, ca_file, target=PUBLIC_TARGET, env=env)

    assert f"(hop probe toward {PUBLIC_TARGET}: no router answered" in missing, missing
    assert "sweep of 12 common PIA addresses (10.10-15.{0,128}.1" in missing, missing
    assert "accepted TCP on 19999: none)" in missing, missing
    assert f"sweep OK CN={CN}" in row(found, PIA_SERVER), found
    assert f"accepted TCP on 19999: {PIA_SERVER})" in found, found


def test_multus_second_interface_behind_the_router(lab: NetLab, sim_dir: Path):
    """A pod: eth0 on the cluster network (10.244.1.5/24), net1 on the router's LAN.

    The cluster's 10.x gateway and route are tried and refused; the hop probe through
    net1's default route finds the PIA server.
    """
    client, cluster = lab.namespace("pod"), lab.namespace("k8s")
    lab.veth(cluster, "cni0", client, "eth0")
    cluster.ip("addr", "add", "10.244.1.1/24", "dev", "cni0")
    client.ip("addr", "add", "10.244.1.5/24", "dev", "eth0")
    client.ip("route", "add", "10.96.0.0/12", "via", "10.244.1.1")
    net = router_level(lab, client=client, client_if="net1")
    ca_file = with_pia_server(lab, sim_dir, net)

    found = client.python(DETECT, str(ca_file), PUBLIC_TARGET)

    assert [PIA_SERVER, CN, "hop 2 (traceroute)"] == found["target"]
    verdicts = {address: (source, verdict) for address, source, verdict in found["results"]}
    assert ("route", "refused") == verdicts["10.244.1.1"]
    assert ("default route", "refused") == verdicts[LAN_ROUTER]
    assert ("hop 2 (traceroute)", "ok") == verdicts[PIA_SERVER]


def once(net: RouterLevel, env: dict[str, str]) -> tuple[str, str]:
    """``pia-mqtt once`` in the client namespace; its stdout and log."""
    done = net.client.run(sys.executable, "-m", "pia_mqtt", "once", env=child_env(env), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, done.stderr


def test_restart_binds_on_the_saved_gateway_without_any_sweep(
    lab: NetLab, sim_dir: Path, tmp_path: Path
):
    """A restart binds on the gateway saved with the lease: no hop probe, no sweep.

    detect-gateway lists the saved gateway first, as ``saved``.

    ``once`` finds it by the hop probe (token endpoint on the public address, no
    PIA_GATEWAY) and saves it with the lease; the next start binds there at once.

    For the restart the router drops ICMP (the hop probe would find nothing) while the
    sweep could find the server: the log shows the saved gateway and no sweep.
    """
    net = router_level(lab)
    ca_file = with_pia_server(lab, sim_dir, net)
    token = start_simulator(
        lab, net.public, sim_dir, "--host", PUBLIC_TARGET, "--users", f"{SIM_USER}:{SIM_PASS}"
    )
    env = daemon_env(token, ca_file, tmp_path)

    first, first_log = once(net, env)
    saved: dict[str, Any] = json.loads((tmp_path / "pia-lease.json").read_text())
    report = detect_gateway_cli(
        net.client, ca_file, target=PUBLIC_TARGET, env={"STATE_FILE": env["STATE_FILE"]}
    )
    drop_icmp(net.router)
    second, second_log = once(net, env)

    assert f"gateway={PIA_SERVER}" in first, first + first_log
    assert f"PIA gateway {PIA_SERVER} (hop 2 (traceroute))" in first_log, first_log
    assert {"address": PIA_SERVER, "hostname": CN} == saved["gateway"]
    listed = " ".join(report.splitlines()[0].split())
    assert f"{PIA_SERVER} saved (certificate {CN}) OK CN={CN}" == listed, report
    assert f"port={saved['port']} status=active gateway={PIA_SERVER}" in second, second_log
    assert f"PIA gateway {PIA_SERVER} (saved)" in second_log, second_log
    assert "sweeping" not in second_log, second_log


def daemon_env(token: dict[str, Any], ca_file: Path, folder: Path) -> dict[str, str]:
    """The daemon's settings: token endpoint on the public address, no PIA_GATEWAY."""
    return {
        "PIA_USER": SIM_USER,
        "PIA_PASS": SIM_PASS,
        "PIA_TOKEN_URL": token["token_url"],
        "REQUESTS_CA_BUNDLE": token["token_ca_file"],
        "PIA_CA_CERT": str(ca_file),
        "PORT_FILE": str(folder / "pia-port.txt"),
        "PORT_DATA_FILE": str(folder / "pia-port-data.json"),
        "STATE_FILE": str(folder / "pia-lease.json"),
        "GATEWAY_SWEEP": SMALL_SWEEP,
        "LOG_LEVEL": "DEBUG",
    }


NETLINK = """import json, subprocess, sys, threading, time
from pia_mqtt.gateway.netlink import NetlinkWatch
calls, changes = [], []
ready = threading.Event()
watch = NetlinkWatch(quiet=0.2, max_delay=0.5)  # a loaded CI machine is slow
assert watch.start(lambda: calls.append(time.monotonic()))
def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)
    changes.append(time.monotonic())
def settle(seconds):  # the reader is asynchronous: give it time to (not) call
    time.sleep(seconds)
settle(0.3)
at_rest = len(calls)
batch = "".join(f"address add 10.9.0.{i}/32 dev a0\\n" for i in range(1, 31))
subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
settle(0.7)
after_burst = len(calls) - at_rest
flap_began = time.monotonic()
while time.monotonic() - flap_began < 2.0:
    ip("route", "replace", "10.77.0.0/16", "dev", "a0")
    settle(0.05)
    ip("route", "del", "10.77.0.0/16", "dev", "a0")
    settle(0.05)
settle(0.7)
during = [t for t in calls if flap_began <= t <= changes[-1]]
watch.close()
print(json.dumps({"at_rest": at_rest, "after_burst": after_burst, "during_flap": len(during),
                  "last_call_after_last_change": calls[-1] > changes[-1],
                  "reader_alive": any(t.name == "netlink" for t in threading.enumerate())}))
"""


def test_route_events_fold_a_burst_into_one_call_and_never_miss_the_last_change(lab: NetLab):
    """The netlink reader folds bursts and keeps up with flapping routes.

    In a namespace: silent at rest, one call for 30 addresses added in one go, and while
    routes flap for 2 s a call at least every max_delay, plus one after the last change
    (the state the daemon must end up with).
    """
    ns = lab.namespace("nl")
    ns.ip("link", "add", "a0", "type", "veth", "peer", "name", "b0")
    ns.ip("link", "set", "a0", "up")

    seen = ns.python(NETLINK)

    assert 0 == seen["at_rest"]
    assert 1 == seen["after_burst"]
    assert seen["during_flap"] >= 3, seen
    assert seen["last_call_after_last_change"], seen
    assert not seen["reader_alive"], seen


PATH_AND_DIGEST = """import json
from pia_mqtt.gateway.system import kernel_fingerprint, path_to
print(json.dumps([path_to("10.9.0.1", 19999), kernel_fingerprint()]))
"""


def test_a_tunnel_made_again_with_the_same_address_is_a_new_path(lab: NetLab):
    """Same address, same routes, new interface: digest and path both change (re-apply due).

    A route to elsewhere (another container's network) changes the digest, not the path.
    """
    ns = lab.namespace("tn")

    def tunnel() -> None:
        ns.ip("link", "add", "tun0", "type", "veth", "peer", "name", "far0")
        ns.ip("addr", "add", "10.9.0.2/24", "dev", "tun0")
        ns.ip("link", "set", "tun0", "up")

    tunnel()
    first = ns.python(PATH_AND_DIGEST)
    ns.ip("link", "add", "br9", "type", "veth", "peer", "name", "br9p")
    ns.ip("addr", "add", "172.31.0.1/24", "dev", "br9")
    elsewhere = ns.python(PATH_AND_DIGEST)
    ns.ip("link", "del", "tun0")
    tunnel()
    again = ns.python(PATH_AND_DIGEST)

    assert first[0].startswith("10.9.0.2 ifindex "), first
    assert first[0] == elsewhere[0]
    assert first[1] != elsewhere[1]
    assert again[0].startswith("10.9.0.2 ifindex ")
    assert first[0] != again[0]
    assert elsewhere[1] != again[1]


def test_routes_flapping_for_seconds_end_bound_on_where_they_settled(
    lab: NetLab, sim_dir: Path, tmp_path: Path
):
    """The default route flips between two PIA servers for 3 s and settles on the second.

    No move is missed: the running daemon ends bound on the server the routes settled on
    (a detection that ran mid-flap is followed by one after the last change).
    """
    client, gw1, gw2 = lab.namespace("cl"), lab.namespace("gwa"), lab.namespace("gwb")
    for gw, side, net in ((gw1, "net1", "10.74.0"), (gw2, "net2", "10.75.0")):
        lab.veth(gw, "gw0", client, side)
        gw.ip("addr", "add", f"{net}.1/24", "dev", "gw0")
        client.ip("addr", "add", f"{net}.2/24", "dev", side)
    client.ip("route", "add", "default", "via", "10.74.0.1")
    start_gateway(lab, gw1, sim_dir, "10.74.0.1:19999:gw-one")
    start_gateway(lab, gw2, sim_dir, "10.75.0.1:19999:gw-two")
    env = netns_daemon_env(start_token_endpoint(lab, client, sim_dir), tmp_path)
    data_file = tmp_path / "pia-port-data.json"
    daemon = lab.start(client, "pia-mqtt run", [sys.executable, "-m", "pia_mqtt", "run"], env=env)
    eventually(lambda: alive(daemon) and bound_on(data_file, "10.74.0.1", "gw-one"), timeout=20)

    flap_until = time.monotonic() + 3
    via = "10.75.0.1"
    while time.monotonic() < flap_until:
        client.ip("route", "replace", "default", "via", via)
        via = "10.74.0.1" if via == "10.75.0.1" else "10.75.0.1"
        time.sleep(0.15)  # the flap's own pace, not a wait for the daemon
    client.ip("route", "replace", "default", "via", "10.75.0.1")

    eventually(lambda: alive(daemon) and bound_on(data_file, "10.75.0.1", "gw-two"), timeout=10)
    assert "Traceback" not in daemon.text(), daemon.text()

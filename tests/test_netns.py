"""Gateway detection in network namespaces made by the test (root, iproute2, veth pairs).

Each test builds a "client" namespace (where detection or the daemon runs) and one or two
"gateway" namespaces running the simulator's gateway on port 19999, joined by veth pairs
whose 10.x addresses exist only inside these namespaces. Nothing here sends a packet to
the host's network: the namespaces have no link to it. Every namespace and process is
removed by the ``lab`` fixture, also when a test fails.
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
    NetLab,
    Netns,
    Started,
    child_env,
    leftover_namespaces,
    remove_stale_namespaces,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.netns

_LABS = itertools.count(1)

DETECT = """import json, sys
from pathlib import Path
from pia_mqtt.gateway import finder as gateway
from pia_mqtt.gateway import system as sysroutes
read = sysroutes.read_proc_routes if sys.argv[2] == "proc" else sysroutes.read_system_routes
finder = gateway.GatewayFinder(configured=None, hostname=None, port=19999,
                               ca_file=Path(sys.argv[1]), read_system=read)
target = finder.find()
print(json.dumps({
    "target": [target.address, target.hostname, target.source],
    "candidates": [[c.address, c.source] for c in finder.candidates()],
    "report": gateway.format_results(finder.detect_all()),
}))
"""


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Provide a NetLab whose namespaces and processes are all gone after the test."""
    remove_stale_namespaces()
    netlab = NetLab(f"t{next(_LABS)}")
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


def start_simulator(lab: NetLab, ns: Netns, sim_dir: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m pia_mqtt.simulator`` inside ``ns``; return its ready line."""
    started = lab.start(
        ns,
        f"simulator in {ns.name}",
        [sys.executable, "-m", "pia_mqtt.simulator", "--dir", str(sim_dir), *args],
    )
    return json.loads(started.readline(timeout=30))


def start_gateway(lab: NetLab, ns: Netns, sim_dir: Path, spec: str) -> dict[str, Any]:
    """Run a simulator gateway only (no token endpoint), e.g. ``10.71.0.1:19999:gw``."""
    return start_simulator(lab, ns, sim_dir, "--no-token", "--gateway", spec)


def detect(client: Netns, ca_file: Path, *, read: str = "ip") -> dict[str, Any]:
    """Run GatewayFinder inside ``client``: the target, the candidates, the report."""
    return client.python(DETECT, str(ca_file), read)


def detect_gateway_cli(
    client: Netns, ca_file: Path, *, target: str, env: dict[str, str] | None = None, code: int = 0
) -> str:
    """``python -m pia_mqtt detect-gateway`` inside ``client``; assert its exit status.

    ``target`` (an address inside the test's namespaces) is where the hop probe sends:
    never PIA_TOKEN_URL's real host, which would also need a name lookup.
    """
    settings = {"PIA_CA_CERT": str(ca_file), "GATEWAY_PROBE_TARGET": target, **(env or {})}
    done = client.run(sys.executable, "-m", "pia_mqtt", "detect-gateway", env=child_env(settings))
    assert code == done.returncode, done.stdout + done.stderr
    return done.stdout


def ok_line(report: str, address: str) -> str:
    """Return the report line for ``address``."""
    lines = [line for line in report.splitlines() if line.split() and line.split()[0] == address]
    assert len(lines) == 1, report
    return lines[0]


def check_cli(client: Netns, ca_file: Path, address: str, cn: str) -> None:
    """Assert ``pia-mqtt detect-gateway`` reports the gateway OK with its CN."""
    line = ok_line(detect_gateway_cli(client, ca_file, target=address), address)
    assert f"CN={cn}" in line, line


def test_default_route_via_the_gateway_router_or_multus_style(lab: NetLab, sim_dir: Path):
    """A client whose default route points at the gateway finds it as 'default route'."""
    gw, client = lab.namespace("gw"), lab.namespace("cl")
    lab.veth(gw, "gw0", client, "net1")
    gw.ip("addr", "add", "10.71.0.1/24", "dev", "gw0")
    client.ip("addr", "add", "10.71.0.2/24", "dev", "net1")
    client.ip("route", "add", "default", "via", "10.71.0.1")
    ready = start_gateway(lab, gw, sim_dir, "10.71.0.1:19999:router-gw")

    found = detect(client, Path(ready["ca_file"]))

    expected = {
        "target": ["10.71.0.1", "router-gw", "default route"],
        "candidates": [["10.71.0.1", "default route"]],
    }
    assert expected == {key: found[key] for key in expected}
    check_cli(client, Path(ready["ca_file"]), "10.71.0.1", "router-gw")


def test_point_to_point_peer_without_any_gateway_route(lab: NetLab, sim_dir: Path):
    """A /32 address with a peer and no gateway in the routes: the peer is the gateway.

    Also without iproute2: /proc/net/route plus interface ioctls find the same peer.
    """
    gw, client = lab.namespace("gw"), lab.namespace("cl")
    lab.veth(gw, "gwp0", client, "ptp0")
    gw.ip("addr", "add", "10.72.0.5/32", "peer", "10.72.0.6", "dev", "gwp0")
    client.ip("addr", "add", "10.72.0.6/32", "peer", "10.72.0.5", "dev", "ptp0")
    ready = start_gateway(lab, gw, sim_dir, "10.72.0.5:19999:milano402:nosan")
    ca_file = Path(ready["ca_file"])

    found = detect(client, ca_file)
    from_proc = detect(client, ca_file, read="proc")

    expected = {
        "target": ["10.72.0.5", "milano402", "interface"],
        "candidates": [
            ["10.72.0.5", "interface"],
            ["10.72.0.1", "interface"],
            ["10.72.128.1", "derived"],
        ],
    }
    assert expected == {key: found[key] for key in expected}
    assert found["target"] == from_proc["target"]
    check_cli(client, ca_file, "10.72.0.5", "milano402")


def wireguard_style(lab: NetLab, sim_dir: Path) -> tuple[Netns, dict[str, Any]]:
    """Build gluetun's WireGuard layout: wg0 with a lone /32, default route in table 51820.

    The server (gateway namespace) answers on 10.73.128.1 as ``Server-11555-2a``.
    """
    gw, client = lab.namespace("gw"), lab.namespace("cl")
    lab.veth(gw, "wgs0", client, "wg0")
    gw.ip("addr", "add", "10.73.128.1/32", "dev", "wgs0")
    gw.ip("route", "add", "10.73.200.17/32", "dev", "wgs0")
    client.ip("addr", "add", "10.73.200.17/32", "dev", "wg0")
    client.ip("route", "add", "default", "dev", "wg0", "table", "51820")
    client.ip("rule", "add", "not", "fwmark", "51820", "table", "51820")
    client.ip("rule", "add", "table", "main", "suppress_prefixlength", "0")
    return client, start_gateway(lab, gw, sim_dir, "10.73.128.1:19999:Server-11555-2a")


def test_default_route_in_its_own_table_gluetun_wireguard_style(lab: NetLab, sim_dir: Path):
    """A gluetun WireGuard setup: a lone /32, the default route in table 51820 behind a rule.

    No route has a gateway; the API answers on x.y.128.1, derived from the tunnel address.
    """
    client, ready = wireguard_style(lab, sim_dir)

    found = detect(client, Path(ready["ca_file"]))

    expected = {
        "target": ["10.73.128.1", "Server-11555-2a", "derived"],
        "candidates": [
            ["10.73.200.1", "interface"],
            ["10.73.128.1", "derived"],
            ["10.73.0.1", "derived"],
        ],
    }
    assert expected == {key: found[key] for key in expected}
    assert "CN=Server-11555-2a" in ok_line(found["report"], "10.73.128.1")
    check_cli(client, Path(ready["ca_file"]), "10.73.128.1", "Server-11555-2a")


def test_once_binds_through_the_detected_gateway(lab: NetLab, sim_dir: Path, tmp_path: Path):
    """``pia-mqtt once`` in the WireGuard layout, no PIA_GATEWAY: a port bound on x.y.128.1."""
    client, _ = wireguard_style(lab, sim_dir)
    env = daemon_env(start_token_endpoint(lab, client, sim_dir), tmp_path)

    done = client.run(sys.executable, "-m", "pia_mqtt", "once", env=child_env(env), timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    data = bound_on(tmp_path / "pia-port-data.json", "10.73.128.1", "Server-11555-2a")
    assert f"port={data['port']} status=active gateway=10.73.128.1" in done.stdout


def test_tunnel_route_gateway_wins_over_the_default_gateway(lab: NetLab, sim_dir: Path):
    """Two servers answer like PIA: the tunnel route's gateway (OpenVPN 0.0.0.0/1) is chosen.

    The report still shows every candidate, the default gateway's CN included.
    """
    gw, client = lab.namespace("gw"), lab.namespace("cl")
    lab.veth(gw, "vpn0", client, "tun0")
    lab.veth(gw, "lan0", client, "eth0")
    gw.ip("addr", "add", "10.76.0.1/24", "dev", "vpn0")
    gw.ip("addr", "add", "172.30.0.1/24", "dev", "lan0")
    client.ip("addr", "add", "10.76.0.6/24", "dev", "tun0")
    client.ip("addr", "add", "172.30.0.2/24", "dev", "eth0")
    client.ip("route", "add", "default", "via", "172.30.0.1")
    client.ip("route", "add", "0.0.0.0/1", "via", "10.76.0.1")
    client.ip("route", "add", "128.0.0.0/1", "via", "10.76.0.1")
    ready = start_simulator(
        lab,
        gw,
        sim_dir,
        "--no-token",
        "--gateway",
        "10.76.0.1:19999:tunnel-gw",
        "--gateway",
        "172.30.0.1:19999:router-gw",
    )

    found = detect(client, Path(ready["ca_file"]))

    expected = {
        "target": ["10.76.0.1", "tunnel-gw", "tunnel route"],
        "candidates": [
            ["10.76.0.1", "tunnel route"],
            ["10.76.128.1", "derived"],
            ["172.30.0.1", "default route"],
        ],
    }
    assert expected == {key: found[key] for key in expected}
    assert "CN=router-gw" in ok_line(found["report"], "172.30.0.1")


def start_token_endpoint(lab: NetLab, client: Netns, sim_dir: Path) -> dict[str, Any]:
    """Run the simulator's token endpoint on the client namespace's own 127.0.0.1."""
    return start_simulator(
        lab, client, sim_dir, "--host", "127.0.0.1", "--users", f"{SIM_USER}:{SIM_PASS}"
    )


def daemon_env(token: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The daemon's environment: simulator users, CAs and token URL; files in tmp_path.

    No PIA_GATEWAY: the gateway must be detected.
    """
    return {
        "PIA_USER": SIM_USER,
        "PIA_PASS": SIM_PASS,
        "PIA_TOKEN_URL": token["token_url"],
        "REQUESTS_CA_BUNDLE": token["token_ca_file"],
        "PIA_CA_CERT": token["ca_file"],
        "PORT_FILE": str(tmp_path / "pia-port.txt"),
        "PORT_DATA_FILE": str(tmp_path / "pia-port-data.json"),
        "STATE_FILE": str(tmp_path / "pia-lease.json"),
        "GATEWAY_WATCH_INTERVAL": "1",
        "LOG_LEVEL": "DEBUG",
    }


def read_data(path: Path) -> dict[str, Any] | None:
    """PORT_DATA_FILE's JSON, or None while it does not exist (or is being replaced)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def bound_on(path: Path, address: str, hostname: str) -> dict[str, Any]:
    """Assert the data file shows an active port on ``address`` verified as ``hostname``."""
    data = read_data(path)
    assert data is not None, "no data file yet"
    assert (address, hostname, "active") == (data["gateway"], data["hostname"], data["status"])
    return data


@pytest.mark.parametrize(
    ("flags", "same_port"),
    [("", True), (":noforeign", False)],
    ids=["new gateway accepts the saved signature", "new gateway refuses it (noforeign)"],
)
def test_gateway_move_while_running(
    lab: NetLab,
    sim_dir: Path,
    tmp_path: Path,
    flags: str,
    same_port: bool,
    capsys: pytest.CaptureFixture[str],
):
    """The VPN moves to another server while ``run`` runs: bound there within 15 s.

    The port stays the same when the new server accepts the saved signature, and is a new
    one when it refuses it (``noforeign``).
    """
    client, gw1 = lab.namespace("cl"), lab.namespace("gwa")
    lab.veth(gw1, "gw0", client, "net1")
    gw1.ip("addr", "add", "10.74.0.1/24", "dev", "gw0")
    client.ip("addr", "add", "10.74.0.2/24", "dev", "net1")
    client.ip("route", "add", "default", "via", "10.74.0.1")
    start_gateway(lab, gw1, sim_dir, "10.74.0.1:19999:gw-one")
    env = daemon_env(start_token_endpoint(lab, client, sim_dir), tmp_path)
    data_file = tmp_path / "pia-port-data.json"
    daemon = lab.start(client, "pia-mqtt run", [sys.executable, "-m", "pia_mqtt", "run"], env=env)

    first = eventually(
        lambda: alive(daemon) and bound_on(data_file, "10.74.0.1", "gw-one"), timeout=20
    )

    # The second server comes up first (a VPN client connects before it switches routes).
    gw2 = lab.namespace("gwb")
    lab.veth(gw2, "gw0", client, "net2")
    gw2.ip("addr", "add", "10.75.0.1/24", "dev", "gw0")
    start_gateway(lab, gw2, sim_dir, f"10.75.0.1:19999:gw-two{flags}")
    moved_at = time.monotonic()
    client.ip("link", "del", "net1")
    client.ip("addr", "add", "10.75.0.2/24", "dev", "net2")
    client.ip("route", "add", "default", "via", "10.75.0.1")

    second = eventually(
        lambda: alive(daemon) and bound_on(data_file, "10.75.0.1", "gw-two"), timeout=15
    )
    recovery = time.monotonic() - moved_at
    with capsys.disabled():  # shown in CI's output, not only on failure
        print(
            f"\n[recovery] gateway move ({'same' if same_port else 'new'} port): bound on the "
            f"new gateway {recovery:.2f} s after the move"
        )

    assert (first["port"] == second["port"]) is same_port, daemon.text()


def alive(daemon: Started) -> bool:
    """Fail at once (with the daemon's output) if the daemon exited."""
    assert daemon.process.poll() is None, daemon.text()
    return True


FINGERPRINT = (
    "import json; from pia_mqtt.gateway.system import kernel_fingerprint; "
    "print(json.dumps(kernel_fingerprint()))"
)


def test_kernel_fingerprint_changes_with_every_vpn_move_and_not_otherwise(lab: NetLab):
    """The watch's /proc digest is stable at rest and changes when the tunnel moves.

    Covered: a new address on the tunnel (WireGuard reconnect), a default route in table
    51820 (gluetun), and a new gateway in the main table (OpenVPN, router-level VPN).
    """
    client, other = lab.namespace("fp"), lab.namespace("fq")
    lab.veth(client, "wg0", other, "peer0")
    client.ip("link", "set", "wg0", "up")
    seen = [client.python(FINGERPRINT), client.python(FINGERPRINT)]
    client.ip("addr", "add", "10.5.200.17/32", "dev", "wg0")
    seen.append(client.python(FINGERPRINT))
    client.ip("route", "add", "default", "dev", "wg0", "table", "51820")
    seen.append(client.python(FINGERPRINT))
    client.ip("addr", "add", "10.19.110.2/24", "dev", "wg0")
    client.ip("route", "add", "default", "via", "10.19.110.1")
    seen.append(client.python(FINGERPRINT))
    client.ip("route", "replace", "default", "via", "10.19.110.9")
    seen.append(client.python(FINGERPRINT))

    assert seen[0] == seen[1]
    assert all(isinstance(digest, str) for digest in seen)
    assert len(set(seen[1:])) == len(seen) - 1

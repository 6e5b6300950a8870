"""Route and address parsing, and the order of gateway candidates (pure, table tests).

Inputs are what ``ip -j route show table all``, ``ip -j addr show`` and ``/proc/net/route``
print in the setups users run: gluetun (OpenVPN and WireGuard), Kubernetes with Multus,
a router-level VPN, PIA's /16 and /19 assignments and a point-to-point tun with a peer.
"""

from __future__ import annotations

import json

import pytest

from pia_mqtt.gateway.routes import Candidate, candidates, derived_hosts
from pia_mqtt.gateway.tables import (
    Address,
    Route,
    parse_ip_addrs,
    parse_ip_routes,
    parse_proc_route,
)


def link(ifname: str, *addr_info: dict[str, object], flags: list[str] | None = None) -> dict:
    """Build one entry of ``ip -j addr show`` the way iproute2 6.x prints it."""
    return {
        "ifindex": 7,
        "ifname": ifname,
        "flags": flags or ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
        "mtu": 1500,
        "qdisc": "noqueue",
        "operstate": "UP",
        "group": "default",
        "addr_info": list(addr_info),
    }


def inet(local: str, prefixlen: int, label: str, peer: str | None = None) -> dict[str, object]:
    """Build an IPv4 ``addr_info`` item; ``peer`` appears as ``address`` like iproute2 prints it."""
    info: dict[str, object] = {"family": "inet", "local": local, "prefixlen": prefixlen}
    if peer is not None:
        info["address"] = peer
    info |= {"scope": "global", "label": label, "valid_life_time": 4294967295}
    return info


def route(dst: str, dev: str, gateway: str | None = None, **extra: object) -> dict[str, object]:
    """Build one entry of ``ip -j route show table all`` (main table: no ``table`` key)."""
    entry: dict[str, object] = {"dst": dst}
    if gateway is not None:
        entry["gateway"] = gateway
    return entry | {"dev": dev} | extra | {"flags": []}


def kernel(dst: str, dev: str, src: str) -> dict[str, object]:
    """Build the connected route the kernel adds for an address."""
    return route(dst, dev, protocol="kernel", scope="link", prefsrc=src)


INET6_LL = {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}
LO = link("lo", inet("127.0.0.1", 8, "lo"), flags=["LOOPBACK", "UP", "LOWER_UP"])
P2P = ["POINTOPOINT", "NOARP", "UP", "LOWER_UP"]
LOCAL_TABLE = [
    route("127.0.0.0/8", "lo", type="local", table="local", scope="host", prefsrc="127.0.0.1"),
    route("127.255.255.255", "lo", type="broadcast", table="local", prefsrc="127.0.0.1"),
]
IPV6 = [
    route("fe80::/64", "eth0", protocol="kernel", metric=256),
    route("default", "eth0", "fd00::1", metric=1024),
]

GLUETUN_OPENVPN = (
    [
        route("0.0.0.0/1", "tun0", "10.19.110.1"),
        route("default", "eth0", "172.18.0.1"),
        kernel("10.19.110.0/24", "tun0", "10.19.110.6"),
        route("128.0.0.0/1", "tun0", "10.19.110.1"),
        kernel("172.18.0.0/16", "eth0", "172.18.0.2"),
        route("212.102.35.98", "eth0", "172.18.0.1"),
        *LOCAL_TABLE,
        *IPV6,
    ],
    [
        LO,
        link("eth0", inet("172.18.0.2", 16, "eth0"), INET6_LL),
        link("tun0", inet("10.19.110.6", 24, "tun0"), flags=P2P),
    ],
)
GLUETUN_WIREGUARD = (
    [
        route("default", "wg0", table="51820", scope="link"),
        route("default", "eth0", "172.18.0.1"),
        kernel("172.18.0.0/16", "eth0", "172.18.0.2"),
        route("10.5.200.17", "wg0", type="local", table="local", scope="host"),
        *LOCAL_TABLE,
    ],
    [
        LO,
        link("eth0", inet("172.18.0.2", 16, "eth0")),
        link("wg0", inet("10.5.200.17", 32, "wg0"), flags=P2P),
    ],
)
MULTUS_MACVLAN = (
    [
        route("default", "net1", "192.168.50.1"),
        route("10.96.0.0/12", "eth0", "10.244.1.1"),
        kernel("10.244.1.0/24", "eth0", "10.244.1.17"),
        kernel("192.168.50.0/24", "net1", "192.168.50.23"),
        *LOCAL_TABLE,
    ],
    [
        LO,
        link("eth0", inet("10.244.1.17", 24, "eth0")),
        link("net1", inet("192.168.50.23", 24, "net1")),
    ],
)
ROUTER_VPN = (
    [
        route("default", "eth0", "192.168.1.1", protocol="dhcp", metric=100),
        kernel("192.168.1.0/24", "eth0", "192.168.1.50"),
        *LOCAL_TABLE,
        *IPV6,
    ],
    [LO, link("eth0", inet("192.168.1.50", 24, "eth0"), INET6_LL)],
)
SLASH16 = (
    [
        route("0.0.0.0/1", "tun0", "10.8.0.1"),
        route("128.0.0.0/1", "tun0", "10.8.0.1"),
        kernel("10.8.0.0/16", "tun0", "10.8.45.12"),
    ],
    [LO, link("tun0", inet("10.8.45.12", 16, "tun0"), flags=P2P)],
)
SLASH19 = (
    [
        route("default", "eth0", "172.18.0.1"),
        kernel("10.10.224.0/19", "tun0", "10.10.230.44"),
    ],
    [
        LO,
        link("eth0", inet("172.18.0.2", 16, "eth0")),
        link("tun0", inet("10.10.230.44", 19, "tun0"), flags=P2P),
    ],
)
POINT_TO_POINT = (
    [
        route("0.0.0.0/1", "tun0", "10.14.112.5"),
        route("default", "eth0", "192.168.1.1", metric=100),
        kernel("10.14.112.5", "tun0", "10.14.112.6"),
        route("128.0.0.0/1", "tun0", "10.14.112.5"),
    ],
    [
        LO,
        link("eth0", inet("192.168.1.50", 24, "eth0")),
        link("tun0", inet("10.14.112.6", 32, "tun0", peer="10.14.112.5"), flags=P2P),
    ],
)


def C(address: str, source: str, detail: str) -> Candidate:
    """Shorthand for an expected candidate."""
    return Candidate(address, source, detail)


CANDIDATE_TABLE = {
    "gluetun OpenVPN: the tunnel route's gateway first": (
        GLUETUN_OPENVPN,
        [
            C("10.19.110.1", "tunnel route", "0.0.0.0/1 dev tun0"),
            C("172.18.0.1", "route", "212.102.35.98/32 dev eth0"),
            C("10.19.128.1", "derived", "from 10.19.110.6"),
            C("10.19.0.1", "derived", "from 10.19.110.6"),
        ],
    ),
    "gluetun WireGuard: table 51820 has no gateway, x.y.128.1 derived from the /32": (
        GLUETUN_WIREGUARD,
        [
            C("10.5.200.1", "interface", "wg0 10.5.200.17/32"),
            C("10.5.128.1", "derived", "from 10.5.200.17"),
            C("10.5.0.1", "derived", "from 10.5.200.17"),
            C("172.18.0.1", "default route", "default dev eth0"),
        ],
    ),
    "Multus macvlan: routes of the pod network, then the router as default gateway": (
        MULTUS_MACVLAN,
        [
            C("10.244.1.1", "route", "10.96.0.0/12 dev eth0"),
            C("192.168.50.1", "default route", "default dev net1"),
        ],
    ),
    "router-level VPN: only the default gateway": (
        ROUTER_VPN,
        [C("192.168.1.1", "default route", "default dev eth0")],
    ),
    "/16 assignment: x.y.0.1": (
        SLASH16,
        [
            C("10.8.0.1", "tunnel route", "0.0.0.0/1 dev tun0"),
            C("10.8.45.1", "derived", "from 10.8.45.12"),
            C("10.8.128.1", "derived", "from 10.8.45.12"),
        ],
    ),
    "/19 subnet: the first host 10.10.224.1, not x.y.z.1": (
        SLASH19,
        [
            C("10.10.224.1", "interface", "tun0 10.10.230.44/19"),
            C("10.10.230.1", "derived", "from 10.10.230.44"),
            C("10.10.128.1", "derived", "from 10.10.230.44"),
            C("10.10.0.1", "derived", "from 10.10.230.44"),
            C("172.18.0.1", "default route", "default dev eth0"),
        ],
    ),
    "point-to-point tun with a peer: the peer, then x.y.z.1 of the subnet": (
        POINT_TO_POINT,
        [
            C("10.14.112.5", "tunnel route", "0.0.0.0/1 dev tun0"),
            C("10.14.112.1", "interface", "tun0 10.14.112.6 peer 10.14.112.5/32"),
            C("10.14.128.1", "derived", "from 10.14.112.6"),
            C("10.14.0.1", "derived", "from 10.14.112.6"),
            C("192.168.1.1", "default route", "default dev eth0"),
        ],
    ),
}


@pytest.mark.parametrize(("system", "expected"), CANDIDATE_TABLE.values(), ids=CANDIDATE_TABLE)
def test_candidates_follow_the_documented_order(system, expected):
    """Tunnel routes, other routes, interface subnets, derived, default route; no repeats."""
    route_json, addr_json = system
    found = candidates(
        parse_ip_routes(json.dumps(route_json)),
        parse_ip_addrs(json.dumps(addr_json)),
        configured=None,
    )
    assert expected == found


def test_configured_gateway_comes_first_and_is_not_repeated():
    """PIA_GATEWAY leads the list; the same address found in routes is not listed again."""
    route_json, addr_json = GLUETUN_OPENVPN
    expected = [
        C("10.19.110.1", "configured", ""),
        C("172.18.0.1", "route", "212.102.35.98/32 dev eth0"),
        C("10.19.128.1", "derived", "from 10.19.110.6"),
        C("10.19.0.1", "derived", "from 10.19.110.6"),
    ]
    found = candidates(
        parse_ip_routes(json.dumps(route_json)),
        parse_ip_addrs(json.dumps(addr_json)),
        configured="10.19.110.1",
    )
    assert expected == found


def test_unusable_addresses_are_skipped():
    """PIA's DNS (10.0.0.242-244), loopback, 0.0.0.0 and own addresses never appear."""
    routes = [
        Route("10.0.0.0", 24, "10.0.0.243", "tun0"),
        Route("10.1.0.0", 16, "127.0.0.1", "lo"),
        Route("10.2.0.0", 16, "0.0.0.0", "eth0"),
        Route("10.3.0.0", 16, "10.9.0.1", "tun0"),  # our own address
        Route("10.4.0.0", 16, "10.9.0.77", "tun0"),
    ]
    addresses = [
        Address("tun0", "10.9.0.1", 24),
        Address("lo", "127.0.0.1", 8),
        Address("lo", "10.96.0.10", 32),  # a service IP on loopback is no tunnel
    ]
    expected = [
        C("10.9.0.77", "route", "10.4.0.0/16 dev tun0"),
        C("10.9.128.1", "derived", "from 10.9.0.1"),
    ]
    assert expected == candidates(routes, addresses, configured=None)


def test_tunnel_default_route_in_its_own_table_beats_the_main_defaults():
    """A default route on ppp/wg/tun in any table is a tunnel route; plain defaults by metric."""
    routes = parse_ip_routes(
        json.dumps(
            [
                route("default", "eth0", "192.168.1.1", metric=100),
                route("default", "ppp0", "10.64.64.64", table="200"),
                route("default", "eth1", "192.168.2.1", metric=50),
            ]
        )
    )
    expected = [
        C("10.64.64.64", "tunnel route", "default dev ppp0 table 200"),
        C("10.64.64.1", "derived", "from 10.64.64.64"),
        C("10.64.128.1", "derived", "from 10.64.64.64"),
        C("10.64.0.1", "derived", "from 10.64.64.64"),
        C("192.168.2.1", "default route", "default dev eth1"),
        C("192.168.1.1", "default route", "default dev eth0"),
    ]
    assert expected == candidates(routes, [], configured=None)


def test_ip_routes_keep_every_table_expand_multipath_and_drop_ipv6():
    """Every table is kept with its name; a multipath route gives one Route per hop."""
    multipath = {
        "dst": "default",
        "table": "7",
        "flags": [],
        "nexthops": [
            {"gateway": "192.168.1.1", "dev": "b0", "weight": 1, "flags": []},
            {"gateway": "192.168.1.2", "dev": "b0", "weight": 1, "flags": []},
        ],
    }
    text = json.dumps(
        [
            route("default", "wg0", table="51820", scope="link"),
            route("10.7.0.0/16", "wg0", "10.5.200.1", table="51820"),
            multipath,
            route("10.5.200.17", "wg0", type="local", table="local", scope="host"),
            *IPV6,
        ]
    )
    expected = [
        Route("0.0.0.0", 0, None, "wg0", table="51820"),
        Route("10.7.0.0", 16, "10.5.200.1", "wg0", table="51820"),
        Route("0.0.0.0", 0, "192.168.1.1", "b0", table="7"),
        Route("0.0.0.0", 0, "192.168.1.2", "b0", table="7"),
        Route("10.5.200.17", 32, None, "wg0", table="local", kind="local"),
    ]
    assert expected == parse_ip_routes(text)


def test_ip_addrs_keep_prefix_and_peer_and_drop_ipv6():
    """IPv4 addresses with their prefix length; a point-to-point peer is kept."""
    text = json.dumps(
        [
            LO,
            link("tun0", inet("10.1.2.3", 16, "tun0", peer="10.1.0.0"), INET6_LL),
            link("ppp0", inet("100.64.1.2", 32, "ppp0", peer="10.64.64.64")),
            link("eth1", flags=["BROADCAST"]),
        ]
    )
    expected = [
        Address("lo", "127.0.0.1", 8),
        Address("tun0", "10.1.2.3", 16, peer="10.1.0.0"),
        Address("ppp0", "100.64.1.2", 32, peer="10.64.64.64"),
    ]
    assert expected == parse_ip_addrs(text)


def test_peer_network_gives_its_first_host():
    """``10.1.2.3 peer 10.1.0.0/16`` points at the subnet 10.1.0.0/16: its first host is tried."""
    addresses = [Address("tun0", "10.1.2.3", 16, peer="10.1.0.0")]
    expected = [
        C("10.1.0.1", "interface", "tun0 10.1.2.3 peer 10.1.0.0/16"),
        C("10.1.2.1", "derived", "from 10.1.2.3"),
        C("10.1.128.1", "derived", "from 10.1.2.3"),
    ]
    assert expected == candidates([], addresses, configured=None)


# gluetun OpenVPN's main table as the kernel prints it (addresses are little-endian hex).
PROC_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
tun0\t00000000\t016E130A\t0003\t0\t0\t0\t00000080\t0\t0\t0
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
tun0\t006E130A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
tun0\t00000080\t016E130A\t0003\t0\t0\t0\t00000080\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t622366D4\t010012AC\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
"""


def test_proc_net_route_is_parsed_from_little_endian_hex():
    """/proc/net/route gives destination, prefix, gateway (only with the G flag) and device."""
    expected = [
        Route("0.0.0.0", 1, "10.19.110.1", "tun0", metric=0),
        Route("0.0.0.0", 0, "172.18.0.1", "eth0", metric=0),
        Route("10.19.110.0", 24, None, "tun0", metric=0),
        Route("128.0.0.0", 1, "10.19.110.1", "tun0", metric=0),
        Route("172.18.0.0", 16, None, "eth0", metric=0),
        Route("212.102.35.98", 32, "172.18.0.1", "eth0", metric=0),
    ]
    assert expected == parse_proc_route(PROC_ROUTE)


def test_proc_net_route_and_ip_json_give_the_same_candidates():
    """Without iproute2 (busybox images) the main table yields the same candidates."""
    route_json, addr_json = GLUETUN_OPENVPN
    addresses = parse_ip_addrs(json.dumps(addr_json))
    from_ip = candidates(parse_ip_routes(json.dumps(route_json)), addresses, configured=None)
    assert from_ip == candidates(parse_proc_route(PROC_ROUTE), addresses, configured=None)


def test_derived_hosts_are_the_usual_pia_api_addresses():
    """x.y.z.1, x.y.128.1 (WireGuard server_vip) and x.y.0.1 (/16) for any x.y.z.w."""
    expected = ["10.5.200.1", "10.5.128.1", "10.5.0.1"]
    assert expected == derived_hosts("10.5.200.17")


def test_garbage_from_ip_raises_value_error():
    """Output that is not ``ip -j`` JSON raises, so the reader falls back to /proc/net/route."""
    with pytest.raises(ValueError, match="Expecting value"):
        parse_ip_routes("Usage: ip route")

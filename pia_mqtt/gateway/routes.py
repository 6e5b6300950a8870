"""Where a PIA gateway may be, read from routing tables and interface addresses (pure).

The port-forwarding API lives on the VPN server's inside address. A client that does not
own the tunnel sees only routes (all tables: gluetun keeps WireGuard's in table 51820),
interface addresses and the default gateway. :func:`candidates` turns them into an ordered
list of addresses worth probing:

1. ``PIA_GATEWAY`` when set (``configured``);
2. gateways of tunnel routes (``0.0.0.0/1``/``128.0.0.0/1``, defaults on tun/wg/ppp), then
   of other routes (``route``);
3. the peer and the first host of each tunnel-like interface's subnet (``interface``);
4. ``x.y.z.1``, ``x.y.128.1`` and ``x.y.0.1`` derived from the tunnel's own addresses and
   tunnel route gateways (``derived``);
5. the default gateway (``default route``).

No I/O here: the parsers take the text that ``/proc/net/route``, ``ip -j route show table
all`` and ``ip -j addr show`` print, so every layout is tested with tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

CONFIGURED = "configured"
TUNNEL_ROUTE = "tunnel route"
ROUTE = "route"
INTERFACE = "interface"
DERIVED = "derived"
DEFAULT_ROUTE = "default route"

MAIN_TABLE = "main"
TUNNEL_PREFIXES = ("tun", "wg", "ppp")
# PIA's in-tunnel DNS servers answer on 10.0.0.242-244; they are never the API.
PIA_DNS = frozenset(IPv4Address(f"10.0.0.{n}") for n in (242, 243, 244))
ANY = str(IPv4Address(0))
_SPLIT_HALVES = frozenset({(ANY, 1), ("128.0.0.0", 1)})


@dataclass(frozen=True)
class Route:
    """One IPv4 route: ``dest/prefix via gateway dev dev table table``."""

    dest: str
    prefix: int
    gateway: str | None
    dev: str | None
    table: str = MAIN_TABLE
    kind: str = "unicast"
    metric: int | None = None

    @property
    def is_default(self) -> bool:
        """True for ``0.0.0.0/0``."""
        return self.prefix == 0

    @property
    def is_split_half(self) -> bool:
        """True for OpenVPN's ``0.0.0.0/1`` and ``128.0.0.0/1`` (def1 redirect)."""
        return (self.dest, self.prefix) in _SPLIT_HALVES


@dataclass(frozen=True)
class Address:
    """One IPv4 interface address; ``peer`` is the far end of a point-to-point link."""

    dev: str
    address: str
    prefixlen: int
    peer: str | None = None

    @property
    def network(self) -> IPv4Network:
        """The subnet this address (or its peer prefix) belongs to."""
        return IPv4Network(f"{self.peer or self.address}/{self.prefixlen}", strict=False)


@dataclass(frozen=True)
class Candidate:
    """An address that may be the PIA gateway, and where it was found."""

    address: str
    source: str
    detail: str = ""


def parse_proc_route(text: str) -> list[Route]:
    """Parse ``/proc/net/route`` (main table only; addresses are little-endian hex)."""
    routes: list[Route] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dev, dest_hex, gw_hex, flags_hex, _ref, _use, metric, mask_hex = fields[:8]
        try:
            dest, gateway, mask = (_hex_le(v) for v in (dest_hex, gw_hex, mask_hex))
            flags, prefix = int(flags_hex, 16), IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            continue
        has_gateway = bool(flags & 0x2) and gateway != IPv4Address(0)
        routes.append(
            Route(
                dest=str(dest),
                prefix=prefix,
                gateway=str(gateway) if has_gateway else None,
                dev=dev,
                metric=int(metric) if metric.isdigit() else None,
            )
        )
    return routes


def _hex_le(value: str) -> IPv4Address:
    return IPv4Address(int(value, 16).to_bytes(4, "little"))


def parse_ip_routes(text: str) -> list[Route]:
    """Parse ``ip -j route show table all``; IPv6 entries are dropped, multipath expanded."""
    routes: list[Route] = []
    for entry in _json_list(text):
        dest, prefix = _split_dst(str(entry.get("dst", "")))
        if dest is None:
            continue
        hops = entry.get("nexthops") or [entry]
        for hop in hops if isinstance(hops, list) else []:
            if not isinstance(hop, dict):
                continue
            gateway = hop.get("gateway")
            if gateway is not None and not _is_ipv4(str(gateway)):
                continue
            metric = entry.get("metric")
            routes.append(
                Route(
                    dest=dest,
                    prefix=prefix,
                    gateway=str(gateway) if gateway is not None else None,
                    dev=_opt_str(hop.get("dev", entry.get("dev"))),
                    table=str(entry.get("table", MAIN_TABLE)),
                    kind=str(entry.get("type", "unicast")),
                    metric=metric if isinstance(metric, int) else None,
                )
            )
    return routes


def _split_dst(dst: str) -> tuple[str | None, int]:
    if dst == "default":
        return ANY, 0
    text, _, bits = dst.partition("/")
    if not _is_ipv4(text):
        return None, 0
    return text, int(bits) if bits.isdigit() else 32


def parse_ip_addrs(text: str) -> list[Address]:
    """Parse ``ip -j addr show``: IPv4 addresses with their prefix and point-to-point peer."""
    addresses: list[Address] = []
    for link in _json_list(text):
        dev = str(link.get("ifname", ""))
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("family") != "inet":
                continue
            local = str(info.get("local", ""))
            if not _is_ipv4(local):
                continue
            peer = info.get("address")
            addresses.append(
                Address(
                    dev=str(info.get("label") or dev).split(":")[0] or dev,
                    address=local,
                    prefixlen=int(info.get("prefixlen", 32)),
                    peer=str(peer) if peer and str(peer) != local and _is_ipv4(str(peer)) else None,
                )
            )
    return addresses


def _json_list(text: str) -> list[dict[str, Any]]:
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list):
        raise TypeError("expected a JSON list from ip -j")
    return [item for item in data if isinstance(item, dict)]


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ip_address(text), IPv4Address)
    except ValueError:
        return False


def _opt_str(value: object) -> str | None:
    return str(value) if value is not None else None


def tunnel_devices(addresses: Iterable[Address]) -> frozenset[str]:
    """Interfaces that look like a VPN tunnel: tun/wg/ppp, or a /32 or peer address.

    Loopback is never one, even with extra /32 addresses (anycast, service IPs).
    """
    return frozenset(
        a.dev
        for a in addresses
        if a.dev != "lo"
        and (a.dev.startswith(TUNNEL_PREFIXES) or a.prefixlen == 32 or a.peer is not None)
    )


def _is_tunnel_dev(dev: str | None, tunnels: frozenset[str]) -> bool:
    return dev is not None and (dev in tunnels or dev.startswith(TUNNEL_PREFIXES))


def candidates(
    routes: Iterable[Route], addresses: Iterable[Address], *, configured: str | None
) -> list[Candidate]:
    """Every address worth probing for the PIA API, best first, without duplicates."""
    routes, addresses = list(routes), list(addresses)
    own = {IPv4Address(a.address) for a in addresses}
    seen: set[IPv4Address] = set()
    out: list[Candidate] = []
    if configured is not None:
        seen.add(IPv4Address(configured))
        out.append(Candidate(configured, CONFIGURED))
    for cand in _ordered(routes, addresses):
        addr = IPv4Address(cand.address)
        if addr in seen or addr in own or _unusable(addr):
            continue
        seen.add(addr)
        out.append(cand)
    return out


def _unusable(addr: IPv4Address) -> bool:
    return addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr in PIA_DNS


def _ordered(routes: list[Route], addresses: list[Address]) -> Iterator[Candidate]:
    tunnels = tunnel_devices(addresses)
    usable = [r for r in routes if r.gateway is not None and r.kind == "unicast"]
    tunnel_routes = [
        r for r in usable if r.is_split_half or (r.is_default and _is_tunnel_dev(r.dev, tunnels))
    ]
    tunnel_routes.sort(key=lambda r: not r.is_split_half)
    other_routes = [r for r in usable if r not in tunnel_routes and not r.is_default]
    defaults = sorted(
        (r for r in usable if r.is_default and r not in tunnel_routes),
        key=lambda r: r.metric or 0,
    )
    tunnel_addresses = [a for a in addresses if a.dev in tunnels]
    for route in tunnel_routes:
        yield Candidate(str(route.gateway), TUNNEL_ROUTE, _describe(route))
    for route in other_routes:
        yield Candidate(str(route.gateway), ROUTE, _describe(route))
    for address in tunnel_addresses:
        for host in _interface_hosts(address):
            yield Candidate(str(host), INTERFACE, f"{address.dev} {_show(address)}")
    bases = [a.address for a in tunnel_addresses]
    bases += [str(r.gateway) for r in tunnel_routes if _is_tunnel_dev(r.dev, tunnels)]
    for base in bases:
        for derived in derived_hosts(base):
            yield Candidate(derived, DERIVED, f"from {base}")
    for route in defaults:
        yield Candidate(str(route.gateway), DEFAULT_ROUTE, _describe(route))


def _interface_hosts(address: Address) -> list[IPv4Address]:
    """List the peer and the first host of the subnet (of the /24 for a /31 or /32)."""
    net = address.network
    hosts = [IPv4Address(address.peer)] if address.peer is not None and net.prefixlen == 32 else []
    if net.prefixlen <= 30:
        hosts.append(net.network_address + 1)
    else:
        # A /32 (WireGuard, OpenVPN net30 peers) says little about the server: gluetun's
        # rule, the own address with the last byte set to 1.
        hosts.append(IPv4Network(f"{address.address}/24", strict=False).network_address + 1)
    return hosts


def derived_hosts(address: str) -> list[str]:
    """List ``x.y.z.1``, ``x.y.128.1`` and ``x.y.0.1`` for ``x.y.z.w``.

    PIA puts the API on the first host of the server's subnet, which a client often sees
    only through its own address: WireGuard's ``server_vip`` is ``x.y.128.1``, /16
    assignments use ``x.y.0.1``.
    """
    a, b, c, _ = address.split(".")
    return [f"{a}.{b}.{c}.1", f"{a}.{b}.128.1", f"{a}.{b}.0.1"]


def _describe(route: Route) -> str:
    dest = "default" if route.is_default else f"{route.dest}/{route.prefix}"
    table = "" if route.table == MAIN_TABLE else f" table {route.table}"
    return f"{dest} dev {route.dev or '?'}{table}"


def _show(address: Address) -> str:
    if address.peer is not None:
        return f"{address.address} peer {address.peer}/{address.prefixlen}"
    return f"{address.address}/{address.prefixlen}"

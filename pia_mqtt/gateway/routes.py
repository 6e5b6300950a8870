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

No I/O here: it takes the routes and addresses :mod:`pia_mqtt.gateway.tables` parsed, so
every layout is tested with tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from pia_mqtt.gateway.tables import MAIN_TABLE, Address, Route

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

CONFIGURED = "configured"
TUNNEL_ROUTE = "tunnel route"
ROUTE = "route"
INTERFACE = "interface"
DERIVED = "derived"
DEFAULT_ROUTE = "default route"

TUNNEL_PREFIXES = ("tun", "wg", "ppp")
# PIA's in-tunnel DNS servers answer on 10.0.0.242-244; they are never the API.
PIA_DNS = frozenset(IPv4Address(f"10.0.0.{n}") for n in (242, 243, 244))


@dataclass(frozen=True)
class Candidate:
    """An address that may be the PIA gateway, and where it was found."""

    address: str
    source: str
    detail: str = ""


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

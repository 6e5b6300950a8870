"""The kernel's routing tables and interface addresses as values (pure).

The parsers take the text that ``/proc/net/route``, ``ip -j route show table all`` and
``ip -j addr show`` print (:mod:`pia_mqtt.gateway.system` reads them; netlink's watch in
:mod:`pia_mqtt.gateway.netlink` only says when to read again), so every layout is tested
with tables. IPv4 only: PIA's forwarding API answers on the tunnel's IPv4 side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

MAIN_TABLE = "main"
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

"""Read this host's routes and IPv4 addresses for gateway detection; sends nothing.

``ip -j`` (iproute2) when it works, else ``/proc/net/route`` and interface ioctls, where
iproute2 is missing or has no JSON output, as on busybox images. Parsing is pure and lives
in :mod:`pia_mqtt.gateway.routes`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import socket
import struct
import subprocess
from pathlib import Path

from pia_mqtt.gateway import tables
from pia_mqtt.gateway.tables import Address, Route

log = logging.getLogger(__name__)

IP_TIMEOUT = 2.0
PROC_ROUTE = Path("/proc/net/route")
FIB_TRIE = Path("/proc/net/fib_trie")
# /proc/net/route columns that describe a route (not RefCnt/Use/MTU/Window/IRTT).
_ROUTE_COLUMNS = (0, 1, 2, 3, 6, 7)
IP_PATHS = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


def read_system_routes() -> tuple[list[Route], list[Address]]:
    """Routes of every table and IPv4 addresses; never raises (empty lists at worst).

    Uses ``ip -j`` (iproute2); busybox's ``ip`` has no JSON output, so any failure falls
    back to :func:`read_proc_routes`.
    """
    ip = shutil.which("ip") or next((p for p in IP_PATHS if Path(p).exists()), None)
    if ip is not None:
        try:
            found = tables.parse_ip_routes(_run(ip, "-j", "route", "show", "table", "all"))
            addresses = tables.parse_ip_addrs(_run(ip, "-j", "addr", "show"))
        except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
            log.debug("ip -j failed (%s); reading /proc/net/route instead", exc)
        else:
            return found, addresses
    return read_proc_routes()


def kernel_fingerprint() -> str | None:
    """A digest of the kernel's IPv4 routing state, read from /proc without a subprocess.

    ``/proc/net/fib_trie`` lists every table's prefixes and this host's local addresses
    (gluetun's WireGuard table 51820 included); ``/proc/net/route`` adds the main table's
    gateways. Both change when a VPN reconnects elsewhere. The gateway watch runs this every
    few seconds, so it must stay cheap: spawning ``ip`` twice each time cost ~90 % of the
    daemon's CPU. None when the files cannot be read (the caller falls back).
    """
    try:
        trie = FIB_TRIE.read_bytes()
        lines = PROC_ROUTE.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return None
    routes_text = "\n".join(
        " ".join(fields[i] for i in _ROUTE_COLUMNS)
        for fields in (line.split() for line in lines)
        if len(fields) > max(_ROUTE_COLUMNS)
    )
    # A tunnel torn down and made again within one event burst leaves the same routes and
    # addresses, but its interface has a new index.
    links = ",".join(f"{index}:{name}" for index, name in _links())
    return hashlib.sha256(trie + routes_text.encode() + links.encode()).hexdigest()[:16]


def path_to(address: str, port: int) -> str | None:
    """The way this host reaches ``address``: source address and that interface's index.

    A route lookup only (``connect`` on a UDP socket sends nothing). The same gateway over
    the same path means a routing change did not touch the tunnel; a tunnel made again has
    a new interface index even when its address is the same.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((address, port))
            source = str(sock.getsockname()[0])
    except OSError:
        return None
    owner = next((a.dev for a in _ioctl_addresses() if a.address == source), None)
    index = next((i for i, name in _links() if name == owner), 0)
    return f"{source} ifindex {index}"


def _links() -> list[tuple[int, str]]:
    try:
        return sorted(socket.if_nameindex())
    except OSError:
        return []


def read_proc_routes() -> tuple[list[Route], list[Address]]:
    """Read the main table from ``/proc/net/route`` and each interface's address (ioctl)."""
    try:
        found = tables.parse_proc_route(PROC_ROUTE.read_text(encoding="ascii"))
    except OSError as exc:
        log.warning("cannot read the routing table (%s): gateway detection sees no routes", exc)
        found = []
    return found, _ioctl_addresses()


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT, check=True)
    return done.stdout


_SIOCGIFADDR = 0x8915
_SIOCGIFDSTADDR = 0x8917
_SIOCGIFNETMASK = 0x891B


def _ioctl_addresses() -> list[Address]:
    """List each interface's primary IPv4 address and peer via ioctl (no iproute2)."""
    out: list[Address] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for name in names:
                address = _ioctl_address(sock.fileno(), name)
                if address is not None:
                    out.append(address)
    except OSError as exc:
        log.debug("cannot list interface addresses (%s)", exc)
    return out


def _ioctl_address(fd: int, name: str) -> Address | None:
    request = struct.pack("256s", name.encode()[:15])

    def ask(code: int) -> str:
        return socket.inet_ntoa(fcntl.ioctl(fd, code, request)[20:24])

    try:
        local, mask = ask(_SIOCGIFADDR), ask(_SIOCGIFNETMASK)
        # The kernel answers the peer for point-to-point addresses, else the local address.
        peer: str | None = ask(_SIOCGIFDSTADDR)
    except OSError:
        return None  # no IPv4 address on this interface
    prefixlen = int(struct.unpack("!I", socket.inet_aton(mask))[0]).bit_count()
    if peer in (local, tables.ANY):
        peer = None
    return Address(name, local, prefixlen, peer)

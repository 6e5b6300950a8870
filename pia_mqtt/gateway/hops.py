"""The routers between this host and the internet, found the way ``tracepath`` finds them.

Router-level VPN and Multus: the tunnel lives on the user's router, so nothing on this
host names the PIA server; it is the next router after the user's one. Like iputils'
``tracepath`` (no raw socket, no ``NET_RAW``), a UDP socket with ``IP_RECVERR`` sends one
datagram per TTL (1, 2, 3 ...) toward a public address; each router where a TTL runs out
answers ICMP "time exceeded", which the kernel queues on the socket's error queue with the
router's address (``SO_EE_OFFENDER``). The destination's own "port unreachable" ends it.

Unlike tracepath every TTL is sent at once and the answers are collected for one short
wait: a handful of tiny packets, well under a second. Linux only. Routers rate-limit the
ICMP errors they send to one host (Linux: a burst of 6, then one a second), so probes
run back to back within a second may hear fewer hops; detection does not run that often.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pia_mqtt.gateway.routes import Candidate

log = logging.getLogger(__name__)

# linux/in.h and linux/socket.h; Python 3.11's socket module lacks IP_RECVERR (3.12 has it).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SOL_IP = getattr(socket, "SOL_IP", 0)
# linux/errqueue.h: struct sock_extended_err, then the offender's struct sockaddr_in.
SO_EE_ORIGIN_ICMP = 2
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_SOCKADDR_IN = struct.Struct("=H2s4s")
ICMP_DEST_UNREACH = 3
ICMP_TIME_EXCEEDED = 11
# traceroute's first port; the destination port tells which TTL an answer belongs to.
BASE_PORT = 33434
MAX_HOPS = 6
WAIT = 1.0
PAYLOAD = b"pia-mqtt gateway hop probe"
PIA_RANGE = IPv4Network("10.0.0.0/8")


class HopProbeUnavailableError(OSError):
    """The hop probe cannot run here (not Linux, or the socket option is refused)."""


@dataclass(frozen=True)
class Hop:
    """One router on the way (``ttl`` 1 is this host's own router), or the destination."""

    ttl: int
    address: str
    reached: bool = False


def parse_error(ancdata: list[tuple[int, int, bytes]], port: int) -> Hop | None:
    """Decode one error-queue message: the hop for the TTL that ``port`` was sent with.

    ``ancdata`` is what ``recvmsg(..., MSG_ERRQUEUE)`` returns, ``port`` the destination
    port of the original datagram (its address). None for anything that is not an ICMP
    answer from a router or the destination (a local error has no offender).
    """
    ttl = port - BASE_PORT
    if not 1 <= ttl <= 255:
        return None
    for level, kind, data in ancdata:
        if level != SOL_IP or kind != IP_RECVERR or len(data) < 24:
            continue
        _errno, origin, icmp_type, _code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
        family, _port, raw = _SOCKADDR_IN.unpack_from(data, _EXTENDED_ERR.size)
        if origin != SO_EE_ORIGIN_ICMP or family != socket.AF_INET:
            continue
        if icmp_type == ICMP_TIME_EXCEEDED:
            return Hop(ttl, socket.inet_ntoa(raw))
        if icmp_type == ICMP_DEST_UNREACH:
            return Hop(ttl, socket.inet_ntoa(raw), reached=True)
    return None


def trace(target: str, *, max_hops: int = MAX_HOPS, wait: float = WAIT) -> list[Hop]:
    """Send one datagram per TTL toward ``target`` (an IPv4 literal); the hops that answered.

    Returns within ``wait`` seconds; raises HopProbeUnavailableError where it cannot work.
    """
    if not sys.platform.startswith("linux"):
        raise HopProbeUnavailableError(
            "the hop probe (router-level VPN detection) needs Linux's IP_RECVERR"
        )
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise HopProbeUnavailableError(f"cannot open a UDP socket: {exc}") from exc
    with sock:
        try:
            sock.setsockopt(SOL_IP, IP_RECVERR, 1)
        except OSError as exc:
            raise HopProbeUnavailableError(f"IP_RECVERR refused: {exc}") from exc
        sock.setblocking(False)  # noqa: FBT003 - the socket API
        sent = 0
        for ttl in range(1, max_hops + 1):
            sock.setsockopt(SOL_IP, socket.IP_TTL, ttl)
            if not _send(sock, target, ttl):
                break
            sent = ttl
        return _collect(sock, sent, time.monotonic() + wait) if sent else []


def _send(sock: socket.socket, target: str, ttl: int) -> bool:
    """Send the datagram for ``ttl``; False when there is no way toward ``target`` at all."""
    for _ in range(2):
        try:
            sock.sendto(PAYLOAD, (target, BASE_PORT + ttl))
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EACCES, errno.EPERM):
                log.debug("hop probe toward %s: %s", target, exc)
                return False
            # An ICMP answer to an earlier TTL (EHOSTUNREACH for "time exceeded") is also
            # reported once as the error of the next send: send again.
            continue
        return True
    return True


def _collect(sock: socket.socket, max_hops: int, end: float) -> list[Hop]:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR)
    hops: dict[int, Hop] = {}
    while True:
        left = end - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            break
        while True:
            try:
                _data, ancdata, _flags, address = sock.recvmsg(512, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                _discard(sock)
                break
            hop = parse_error(ancdata, address[1]) if isinstance(address, tuple) else None
            if hop is not None:
                hops.setdefault(hop.ttl, hop)
        if _complete(hops, max_hops):
            break
    return [hops[ttl] for ttl in sorted(hops)]


def _discard(sock: socket.socket) -> None:
    """Read away ordinary datagrams (a target that answers UDP): poll would never rest."""
    with contextlib.suppress(OSError):
        while sock.recv(512):
            pass


def _complete(hops: dict[int, Hop], max_hops: int) -> bool:
    """Every TTL has answered, or the destination did and every router below it.

    The destination's "port unreachable" answers are rate-limited (one per second after a
    short burst), so the lowest TTL that reached it may stay silent: the routers are what
    matters, the first answer from the destination ends the wait.
    """
    if all(ttl in hops for ttl in range(1, max_hops + 1)):
        return True
    if not any(hop.reached for hop in hops.values()):
        return False
    routers = [ttl for ttl, hop in hops.items() if not hop.reached]
    return all(ttl in hops for ttl in range(1, max(routers, default=0) + 1))


def hop_candidates(hops: list[Hop], *, own: frozenset[str] = frozenset()) -> list[Candidate]:
    """The private 10.x routers as candidates, then x.y.128.1, x.y.0.1 and x.y.z.1 from each.

    The destination itself is never one (it is the public address probed toward).
    """
    out: list[Candidate] = []
    seen = set(own)
    routers = [h for h in hops if not h.reached and IPv4Address(h.address) in PIA_RANGE]
    for hop in routers:
        if hop.address not in seen:
            seen.add(hop.address)
            out.append(Candidate(hop.address, f"hop {hop.ttl} (traceroute)"))
    for hop in routers:
        a, b, c, _ = hop.address.split(".")
        for derived in (f"{a}.{b}.128.1", f"{a}.{b}.0.1", f"{a}.{b}.{c}.1"):
            if derived not in seen:
                seen.add(derived)
                out.append(Candidate(derived, f"derived from hop {hop.ttl}"))
    return out

"""The seed's last resort: knock on the common PIA gateway addresses, bounded in time.

PIA's API usually answers on ``10.N.0.1`` or ``10.N.128.1``. When neither the routes, the
tunnel addresses nor the hop probe lead to it, every such address is tried with a plain
TCP connect to the API port, all of a batch at once on non-blocking sockets (no thread
per address), each batch cut off after a short timeout and the whole sweep after a hard
deadline. Only the few that accept a connection are then checked with a TLS handshake by
the finder. Addresses in networks this host is itself on are skipped: those candidates
come from the interfaces already.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import selectors
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from pia_mqtt.gateway.routes import Candidate

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

SOURCE = "sweep"
# 512 addresses in two batches of 256: two connect timeouts when every address is silent,
# well inside the deadline. Fewer at once where the open-files limit is low.
BATCH = 256
CONNECT_TIMEOUT = 1.0
DEADLINE = 12.0


@dataclass(frozen=True)
class SweepReport:
    """What a sweep did: how many addresses it knocked on and which accepted TCP."""

    tried: int
    skipped: int
    accepted: tuple[str, ...]
    seconds: float
    cut_off: bool = False

    def describe(self, port: int, octets: range) -> str:
        """One line for detect-gateway and the not-found error."""
        span = f"10.{octets.start}-{octets.stop - 1}.{{0,128}}.1"
        if len(octets) == 1:
            span = f"10.{octets.start}.{{0,128}}.1"
        opened = ", ".join(self.accepted) if self.accepted else "none"
        cut = ", cut off by the deadline" if self.cut_off else ""
        return (
            f"sweep of {self.tried} common PIA addresses ({span}, {self.skipped} skipped: this "
            f"host's own networks) in {self.seconds:.1f} s{cut}: accepted TCP on {port}: {opened}"
        )


def sweep_addresses(octets: range, *, skip: Iterable[IPv4Network] = ()) -> tuple[list[str], int]:
    """``10.N.0.1`` and ``10.N.128.1`` for N in ``octets``, minus ``skip``; and how many skipped."""
    networks = [n for n in skip if n.prefixlen < 32]
    out: list[str] = []
    skipped = 0
    for n in octets:
        for third in (0, 128):
            address = IPv4Address(f"10.{n}.{third}.1")
            if any(address in net for net in networks):
                skipped += 1
            else:
                out.append(str(address))
    return out, skipped


def open_ports(
    addresses: Sequence[str],
    port: int,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    deadline: float = DEADLINE,
    batch: int = BATCH,
) -> tuple[list[str], bool]:
    """The addresses (in the given order) whose ``port`` accepted a TCP connection.

    Also whether the deadline cut the sweep short.
    """
    end = time.monotonic() + deadline
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        batch = max(8, min(batch, (soft - 64) // 2))
    accepted: list[str] = []
    for start in range(0, len(addresses), batch):
        left = end - time.monotonic()
        if left <= 0:
            return accepted, True
        accepted += _connect_batch(
            addresses[start : start + batch], port, min(connect_timeout, left)
        )
    return accepted, False


def _connect_batch(chunk: Sequence[str], port: int, timeout: float) -> list[str]:
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    opened: set[str] = set()
    try:
        for address in chunk:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setblocking(False)  # noqa: FBT003 - the socket API
            code = sock.connect_ex((address, port))
            if code in (0, errno.EINPROGRESS):
                selector.register(sock, selectors.EVENT_WRITE, address)
        end = time.monotonic() + timeout
        while selector.get_map():
            left = end - time.monotonic()
            if left <= 0:
                break
            for key, _events in selector.select(left):
                selector.unregister(key.fileobj)
                ready = key.fileobj
                assert isinstance(ready, socket.socket)  # noqa: S101 - registered above
                if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    opened.add(key.data)
    finally:
        selector.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
    return [address for address in chunk if address in opened]


def sweep_candidates(accepted: Iterable[str]) -> list[Candidate]:
    """The addresses that accepted TCP, as candidates for the TLS check."""
    return [Candidate(address, SOURCE) for address in accepted]

"""Candidates this host's own state cannot name: routers beyond its router, and the sweep.

Router-level VPN and Multus put the tunnel on the user's router; the PIA server is then
the next private router on the way out, learned by the hop probe
(:mod:`pia_mqtt.gateway.hops`) in a thread of its own while the local candidates are being
probed. The sweep (:mod:`pia_mqtt.gateway.sweep`) comes last, when nothing else verified.
Both say what they did in one line (``notes`` of the finder) for detect-gateway and the
not-found error.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent.futures import Future
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING

from pia_mqtt.gateway import hops, sweep

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from ipaddress import IPv4Network

    from pia_mqtt.gateway.routes import Candidate

log = logging.getLogger(__name__)

Found = tuple[list["Candidate"], str]


class Beyond:
    """The hop probe toward ``target`` and the sweep over ``octets`` (each off when None)."""

    def __init__(
        self,
        *,
        target: str | None,
        octets: range | None,
        port: int,
        trace: Callable[[str], list[hops.Hop]] = hops.trace,
    ) -> None:
        self._target = target
        self._sweep = octets
        self._port = port
        self._trace = trace
        self._resolved: str | None = None
        self._swept_before = False

    @property
    def sweeps(self) -> bool:
        """Whether the sweep is on."""
        return self._sweep is not None

    def start_trace(self, known: frozenset[str]) -> Future[Found] | None:
        """Start the hop probe; its candidates (minus ``known``) and note, None when off."""
        if self._target is None:
            return None
        # A daemon thread, not a pool: a name lookup that hangs must not hold up exit.
        future: Future[Found] = Future()

        def run() -> None:
            try:
                future.set_result(self._hop_candidates(known))
            except Exception as exc:  # a bug here must not hang detection: it is the note
                future.set_result(([], f"hop probe failed: {exc}"))

        threading.Thread(target=run, name="gateway-hops", daemon=True).start()
        return future

    def _hop_candidates(self, known: frozenset[str]) -> Found:
        target = self._resolve()
        if target is None:
            return [], f"hop probe skipped: cannot resolve {self._target}"
        if IPv4Address(target).is_loopback:
            return [], f"hop probe skipped: {target} is this host"
        try:
            found = self._trace(target)
        except hops.HopProbeUnavailableError as exc:
            return [], f"hop probe unavailable: {exc}"
        where = f"hop probe toward {target}"
        if not found:
            return [], f"{where}: no router answered (ICMP blocked on the way?)"
        shown = ", ".join(f"{h.ttl}={h.address}" for h in found if not h.reached)
        reached = " (reached)" if any(h.reached for h in found) else ""
        return hops.hop_candidates(found, own=known), f"{where}: hops {shown or 'none'}{reached}"

    def _resolve(self) -> str | None:
        target = self._target
        assert target is not None  # noqa: S101 - only called with a target
        try:
            if isinstance(ip_address(target), IPv4Address):
                return target
        except ValueError:
            pass
        if self._resolved is None:
            try:
                infos = socket.getaddrinfo(target, None, socket.AF_INET, socket.SOCK_DGRAM)
            except OSError as exc:
                log.debug("hop probe: resolving %s failed: %s", target, exc)
                return None
            self._resolved = str(infos[0][4][0])
        return self._resolved

    def sweep(self, skip: Sequence[IPv4Network]) -> tuple[list[Candidate], str]:
        """Knock on the common addresses (not in ``skip``); those that accepted TCP, a note."""
        octets = self._sweep
        assert octets is not None  # noqa: S101 - only called when the sweep is on
        addresses, skipped = sweep.sweep_addresses(octets, skip=skip)
        level = logging.DEBUG if self._swept_before else logging.WARNING
        log.log(
            level,
            "No gateway candidate verified (routes, interfaces, hop probe): sweeping %d common "
            "PIA gateway addresses (10.N.0.1, 10.N.128.1) on port %d, at most %g s",
            len(addresses),
            self._port,
            sweep.DEADLINE,
        )
        self._swept_before = True
        began = time.monotonic()
        accepted, cut_off = sweep.open_ports(addresses, self._port)
        report = sweep.SweepReport(
            len(addresses), skipped, tuple(accepted), time.monotonic() - began, cut_off
        )
        return sweep.sweep_candidates(accepted), report.describe(self._port, octets)

"""Find the PIA gateway: read routes and addresses, trace the first hops, probe, sweep.

:mod:`pia_mqtt.gateway.routes` ranks the addresses this host's own state suggests (pure);
:mod:`pia_mqtt.gateway.hops` adds the private routers beyond this host's router
(router-level VPN, Multus), traced in a thread while the local candidates are probed; the
sweep of :mod:`pia_mqtt.gateway.sweep` runs only when nothing else answered. A candidate
counts only if its API port completes a TLS handshake that chains to PIA's CA
(:func:`pia_mqtt.pia.tls.probe`); the certificate's name is learned from it unless
``PIA_HOSTNAME`` pins one. Candidates are probed concurrently and the first verified one
in rank order wins once every better one failed, or after a short grace: a silent old
gateway never holds detection up.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import GatewayNotFoundError
from pia_mqtt.gateway import hops, routes
from pia_mqtt.gateway.beyond import Beyond, Found
from pia_mqtt.gateway.report import CandidateResult, format_results, not_found_message
from pia_mqtt.gateway.routes import Candidate
from pia_mqtt.gateway.system import kernel_fingerprint, path_to, read_system_routes
from pia_mqtt.gateway.tables import Address, Route
from pia_mqtt.pia.tls import ProbeResult, Verdict, probe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

log = logging.getLogger(__name__)

MAX_WORKERS = 16
# How long a verified candidate waits for better-ranked ones still probing.
GRACE = 0.2
SAVED = "saved"

__all__ = ["CandidateResult", "GatewayFinder", "format_results", "not_found_message"]


class GatewayFinder:
    """Detect the PIA gateway from this host's routes and addresses, and the hops beyond.

    ``configured`` (``PIA_GATEWAY``) is the user's choice: it is the only address probed,
    and it still has to pass the TLS check. ``hostname`` (``PIA_HOSTNAME``) must then be
    in the certificate; without it the certificate's own name is learned. ``probe_target``
    (an address or a name, resolved in the hop thread) switches the hop probe on, and
    ``sweep_octets`` the sweep; both are off unless wiring passes them.
    """

    def __init__(
        self,
        *,
        configured: str | None,
        hostname: str | None,
        port: int,
        ca_file: Path,
        probe_timeout: float = 2.0,
        deadline: float = 5.0,
        read_system: Callable[[], tuple[list[Route], list[Address]]] | None = None,
        probe_target: str | None = None,
        sweep_octets: range | None = None,
        trace: Callable[[str], list[hops.Hop]] = hops.trace,
    ) -> None:
        self._configured = configured
        self._hostname = hostname
        self._port = port
        self._ca_file = ca_file
        self._probe_timeout = probe_timeout
        self._deadline = deadline
        self._read_system = read_system or read_system_routes
        self._beyond = Beyond(target=probe_target, octets=sweep_octets, port=port, trace=trace)
        self.notes: tuple[str, ...] = ()

    def candidates(self) -> list[Candidate]:
        """Addresses to try, best first; reads local state only, sends nothing."""
        return self._local(*self._system())

    def detect_all(self, *, saved: GatewayTarget | None = None) -> list[CandidateResult]:
        """Probe every candidate (``saved`` first), sweeping when none verifies.

        What the hop probe and the sweep did is in :attr:`notes` afterwards.
        """
        tried = [self._saved_result(saved)] if saved is not None and not self._configured else []
        return tried + self._detect(stop_at_first_ok=False)

    def find(self, *, saved: GatewayTarget | None = None) -> GatewayTarget:
        """Return the best verified candidate; raise GatewayNotFoundError listing them all.

        ``saved`` (the gateway kept with the lease, at start only) is tried alone first:
        one handshake when it still answers, the full detection when it does not.
        """
        tried: list[CandidateResult] = []
        if saved is not None and self._configured is None:
            result = self._saved_result(saved)
            if result.probe.ok:
                return self._target_of(result)
            log.info(
                "Saved gateway %s did not verify (%s): detecting the gateway",
                saved.address,
                result.probe.verdict.value,
            )
            tried.append(result)
        results = tried + self._detect(stop_at_first_ok=True)
        best = _best(results)
        if best is None:
            raise GatewayNotFoundError(
                not_found_message(results, port=self._port, notes=self.notes)
            )
        return self._target_of(best)

    def _saved_result(self, saved: GatewayTarget) -> CandidateResult:
        candidate = Candidate(saved.address, SAVED, f"certificate {saved.hostname}")
        return CandidateResult(candidate, self._probe_one(candidate, saved.hostname))

    def fingerprint(self) -> str:
        """Digest the routes and addresses detection depends on; sends no network traffic.

        Stable while nothing relevant changes; a VPN reconnect changes the tunnel's
        address or routes and so the digest.
        """
        if self._read_system is read_system_routes:
            digest = kernel_fingerprint()
            if digest is not None:
                return digest
        found, addresses = self._read_system()
        lines = [
            f"{c.address} {c.source} {c.detail}"
            for c in routes.candidates(found, addresses, configured=None)
        ]
        lines += sorted(
            f"addr {a.dev} {a.address}/{a.prefixlen} {a.peer or ''}"
            for a in addresses
            if not a.address.startswith("127.")
        )
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def path(self, address: str) -> str | None:
        """How this host reaches ``address`` now (source address, interface); sends nothing."""
        return path_to(address, self._port)

    # -- detection ------------------------------------------------------------------------
    def _system(self) -> tuple[list[Route], list[Address]]:
        if self._configured is not None:
            return [], []
        return self._read_system()

    def _local(self, found: list[Route], addresses: list[Address]) -> list[Candidate]:
        if self._configured is not None:
            return [Candidate(self._configured, routes.CONFIGURED, "PIA_GATEWAY")]
        return routes.candidates(found, addresses, configured=None)

    def _detect(self, *, stop_at_first_ok: bool) -> list[CandidateResult]:
        found, addresses = self._system()
        local = self._local(found, addresses)
        known = frozenset(a.address for a in addresses) | {c.address for c in local}
        beyond = self._beyond if self._configured is None else None
        traced = beyond.start_trace(known) if beyond is not None else None
        results = self._probe_all(local, stop_at_first_ok=stop_at_first_ok, more=traced)
        notes = [_note(traced)] if traced is not None else []
        if beyond is not None and beyond.sweeps and _best(results) is None:
            skip = [a.network for a in addresses if not a.address.startswith("127.")]
            accepted, note = beyond.sweep(skip)
            results += self._probe_all(accepted, stop_at_first_ok=stop_at_first_ok)
            notes.append(note)
        self.notes = tuple(notes)
        return results

    # -- probing --------------------------------------------------------------------------
    def _target_of(self, result: CandidateResult) -> GatewayTarget:
        cert = result.probe.cert
        assert cert is not None  # noqa: S101 - an OK probe has a certificate
        name = self._hostname or cert.server_name or ""
        target = GatewayTarget(result.candidate.address, name, result.candidate.source)
        log.info("PIA gateway %s (%s), certificate name %s", target.address, target.source, name)
        return target

    def _probe_one(self, candidate: Candidate, hostname: str | None = None) -> ProbeResult:
        return probe(
            candidate.address,
            self._port,
            self._ca_file,
            timeout=self._probe_timeout,
            hostname=self._hostname or hostname,
        )

    def _probe_all(
        self,
        candidates: Sequence[Candidate],
        *,
        stop_at_first_ok: bool,
        more: Future[Found] | None = None,
    ) -> list[CandidateResult]:
        ranked = list(candidates)
        results: dict[int, ProbeResult] = {}
        if ranked or more is not None:
            pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="gateway-probe")
            try:
                self._collect(pool, ranked, results, stop_at_first_ok=stop_at_first_ok, more=more)
            finally:
                # Probes still running end on their own socket timeout; nobody waits.
                pool.shutdown(wait=False, cancel_futures=True)
        unfinished = (
            "not waited for: another candidate answered"
            if stop_at_first_ok and any(r.ok for r in results.values())
            else f"no verdict within the {self._deadline:g} s detection deadline"
        )
        out = [
            CandidateResult(
                candidate,
                results.get(index)
                or ProbeResult(candidate.address, self._port, Verdict.TIMEOUT, detail=unfinished),
            )
            for index, candidate in enumerate(ranked)
        ]
        for item in out:
            log.debug(
                "gateway candidate %s (%s): %s %s",
                item.candidate.address,
                item.candidate.source,
                item.probe.verdict.value,
                item.probe.detail,
            )
        return out

    def _collect(
        self,
        pool: ThreadPoolExecutor,
        ranked: list[Candidate],
        results: dict[int, ProbeResult],
        *,
        stop_at_first_ok: bool,
        more: Future[Found] | None,
    ) -> None:
        """Probe ``ranked`` (growing by the hop candidates once ``more`` is done)."""
        futures: dict[Future[ProbeResult], int] = {}

        def submit(candidate: Candidate) -> Future[ProbeResult]:
            future = pool.submit(self._probe_one, candidate)
            futures[future] = len(ranked)
            ranked.append(candidate)
            return future

        first, ranked[:] = list(ranked), []
        for candidate in first:
            submit(candidate)
        end = time.monotonic() + self._deadline
        grace_end: float | None = None
        pending: set[Future[Any]] = set(futures)
        if more is not None:
            pending.add(more)
        while pending:
            now = time.monotonic()
            remaining = min(end, grace_end or end) - now
            if remaining <= 0:
                return
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                if future is more:
                    pending.update(submit(candidate) for candidate in more.result()[0])
                else:
                    results[futures[future]] = future.result()
            if stop_at_first_ok and any(r.ok for r in results.values()):
                if _first_ok_settled(len(ranked), results):
                    return
                grace_end = grace_end or time.monotonic() + GRACE


def _first_ok_settled(count: int, results: dict[int, ProbeResult]) -> bool:
    """Tell whether some candidate is OK and every candidate before it has failed."""
    for index in range(count):
        result = results.get(index)
        if result is None:
            return False
        if result.ok:
            return True
    return False


def _best(results: Sequence[CandidateResult]) -> CandidateResult | None:
    return next((r for r in results if r.probe.ok and r.probe.cert is not None), None)


def _note(traced: Future[Found]) -> str:
    if not traced.done():
        return "hop probe not waited for: a better candidate answered"
    return traced.result()[1]

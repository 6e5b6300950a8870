"""Find the PIA gateway: read routes and addresses, probe candidates, watch for changes.

:mod:`pia_mqtt.gateway.routes` decides which addresses are worth trying (pure); this module reads
the system through :mod:`pia_mqtt.gateway.system` and probes every candidate at once. A
candidate counts only if its API port completes a TLS handshake that chains to PIA's CA
(:func:`pia_mqtt.pia.tls.probe`); the certificate's name is learned from it unless
``PIA_HOSTNAME`` pins one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import GatewayNotFoundError
from pia_mqtt.gateway import routes
from pia_mqtt.gateway.routes import Address, Candidate, Route
from pia_mqtt.gateway.system import kernel_fingerprint, read_system_routes
from pia_mqtt.pia.tls import ProbeResult, Verdict, probe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

log = logging.getLogger(__name__)

MAX_WORKERS = 16

HINTS = (
    "Common causes:",
    "  - VPN not connected yet: wait until the tunnel is up (it is retried automatically).",
    "  - Non-standard PIA gateway IP: set PIA_GATEWAY to the gateway's address.",
    "  - Firewall blocking port {port}: allow TCP to the gateway on that port (PIA_GATEWAY_PORT).",
)


@dataclass(frozen=True)
class CandidateResult:
    """One candidate and what probing it found."""

    candidate: Candidate
    probe: ProbeResult


class GatewayFinder:
    """Detect the PIA gateway from this host's routes and addresses.

    ``configured`` (``PIA_GATEWAY``) is the user's choice: it is the only address probed,
    and it still has to pass the TLS check. ``hostname`` (``PIA_HOSTNAME``) must then be
    in the certificate; without it the certificate's own name is learned.
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
    ) -> None:
        self._configured = configured
        self._hostname = hostname
        self._port = port
        self._ca_file = ca_file
        self._probe_timeout = probe_timeout
        self._deadline = deadline
        self._read_system = read_system or read_system_routes

    def candidates(self) -> list[Candidate]:
        """Addresses to try, best first; reads local state only, sends nothing."""
        if self._configured is not None:
            return [Candidate(self._configured, routes.CONFIGURED, "PIA_GATEWAY")]
        found, addresses = self._read_system()
        return routes.candidates(found, addresses, configured=None)

    def detect_all(self) -> list[CandidateResult]:
        """Probe every candidate concurrently; the whole run ends within ``deadline``."""
        return self._probe_all(self.candidates(), stop_at_first_ok=False)

    def find(self) -> GatewayTarget:
        """Return the first candidate (in candidate order) that proved to be a PIA gateway.

        Returns as soon as every better candidate has failed and one has answered, so a
        slow dead candidate further down the list does not delay the answer.
        """
        results = self._probe_all(self.candidates(), stop_at_first_ok=True)
        for result in results:
            cert = result.probe.cert
            if result.probe.ok and cert is not None:
                name = self._hostname or cert.server_name or ""
                target = GatewayTarget(result.candidate.address, name, result.candidate.source)
                log.info(
                    "PIA gateway %s (%s), certificate name %s",
                    target.address,
                    target.source,
                    target.hostname,
                )
                return target
        raise GatewayNotFoundError(not_found_message(results, port=self._port))

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

    def _probe_one(self, candidate: Candidate) -> ProbeResult:
        return probe(
            candidate.address,
            self._port,
            self._ca_file,
            timeout=self._probe_timeout,
            hostname=self._hostname,
        )

    def _probe_all(
        self, candidates: Sequence[Candidate], *, stop_at_first_ok: bool
    ) -> list[CandidateResult]:
        results: dict[int, ProbeResult] = {}
        if candidates:
            pool = ThreadPoolExecutor(
                max_workers=min(MAX_WORKERS, len(candidates)),
                thread_name_prefix="gateway-probe",
            )
            try:
                self._collect(pool, candidates, results, stop_at_first_ok=stop_at_first_ok)
            finally:
                # Probes still running end on their own socket timeout; nobody waits.
                pool.shutdown(wait=False, cancel_futures=True)
        unfinished = (
            "not waited for: a better candidate answered"
            if stop_at_first_ok and any(r.ok for r in results.values())
            else f"no verdict within the {self._deadline:g} s detection deadline"
        )
        out = [
            CandidateResult(
                candidate,
                results.get(index)
                or ProbeResult(candidate.address, self._port, Verdict.TIMEOUT, detail=unfinished),
            )
            for index, candidate in enumerate(candidates)
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
        candidates: Sequence[Candidate],
        results: dict[int, ProbeResult],
        *,
        stop_at_first_ok: bool,
    ) -> None:
        futures: dict[Future[ProbeResult], int] = {
            pool.submit(self._probe_one, candidate): index
            for index, candidate in enumerate(candidates)
        }
        end = time.monotonic() + self._deadline
        pending = set(futures)
        while pending:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
            if stop_at_first_ok and _first_ok_settled(len(candidates), results):
                return


def _first_ok_settled(count: int, results: dict[int, ProbeResult]) -> bool:
    """Tell whether some candidate is OK and every candidate before it has failed."""
    for index in range(count):
        result = results.get(index)
        if result is None:
            return False
        if result.ok:
            return True
    return False


def not_found_message(results: Sequence[CandidateResult], *, port: int) -> str:
    """Build the "Could not detect gateway IP" text: every address tried, what to check."""
    # The first line is what the state document and MQTT show (one line): name the verdicts.
    tried = ", ".join(f"{r.candidate.address} {r.probe.verdict.value}" for r in results[:4])
    more = f" and {len(results) - 4} more" if len(results) > 4 else ""
    summary = f" (tried {tried}{more})" if results else " (no candidates)"
    lines = [
        (
            f"Could not detect gateway IP: no candidate answered on port {port} with PIA's "
            f"certificate{summary}."
        )
    ]
    if results:
        lines.append("Addresses tried:")
        lines += [f"  {_result_line(r)}" for r in results]
    else:
        lines.append("No candidate found: no tunnel routes, tunnel interfaces or default route.")
    lines += [hint.format(port=port) for hint in HINTS]
    verdicts = {r.probe.verdict for r in results}
    if Verdict.WRONG_NAME in verdicts:
        lines.append(
            "  - The certificate name differs from PIA_HOSTNAME: fix or unset PIA_HOSTNAME."
        )
    if Verdict.WRONG_CERTIFICATE in verdicts:
        lines.append(
            "  - A server answered with a certificate not issued by PIA's CA: it is not a PIA"
            " gateway (or PIA_CA_CERT points at the wrong file)."
        )
    return "\n".join(lines)


def _result_line(result: CandidateResult) -> str:
    cand, found = result.candidate, result.probe
    where = f"{cand.source}, {cand.detail}" if cand.detail else cand.source
    if found.ok and found.cert is not None:
        return f"{cand.address} ({where}): OK, certificate name {found.cert.server_name}"
    detail = f" - {found.detail}" if found.detail else ""
    return f"{cand.address} ({where}): {found.verdict.value}{detail}"


def format_results(results: Sequence[CandidateResult]) -> str:
    """One line per candidate for ``pia-mqtt detect-gateway``: address, source, verdict, CN."""
    rows: list[tuple[str, str, str]] = []
    for result in results:
        cand, found = result.candidate, result.probe
        where = f"{cand.source} ({cand.detail})" if cand.detail else cand.source
        if found.ok and found.cert is not None:
            verdict = f"OK  CN={found.cert.server_name}"
        else:
            verdict = found.verdict.value + (f": {found.detail}" if found.detail else "")
        rows.append((cand.address, where, verdict))
    if not rows:
        return "no gateway candidates found (no tunnel routes, tunnel interfaces or default route)"
    width_a = max(len(r[0]) for r in rows)
    width_s = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{width_a}}  {s:<{width_s}}  {v}" for a, s, v in rows)

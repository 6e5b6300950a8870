"""What detection found, in words: ``detect-gateway``'s table and the not-found error.

Each candidate says where it came from (``tunnel route``, ``hop 2 (traceroute)``,
``derived from hop 2``, ``sweep``, ``saved`` ...) so that a user can tell why an address
was tried; the seed's troubleshooting hints close the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pia_mqtt.pia.tls import ProbeResult, Verdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pia_mqtt.gateway.routes import Candidate

HINTS = (
    "Common causes:",
    "  - VPN not connected yet: wait until the tunnel is up (it is retried automatically).",
    "  - Non-standard PIA gateway IP: set PIA_GATEWAY to the gateway's address.",
    "  - Firewall blocking port {port}: allow TCP to the gateway on that port (PIA_GATEWAY_PORT).",
)

NOTHING_FOUND = "no tunnel routes, tunnel interfaces, private hops or default route"


@dataclass(frozen=True)
class CandidateResult:
    """One candidate and what probing it found."""

    candidate: Candidate
    probe: ProbeResult


def not_found_message(
    results: Sequence[CandidateResult], *, port: int, notes: Sequence[str] = ()
) -> str:
    """Build the "Could not detect gateway IP" text: every address tried, what to check.

    ``notes`` say what the hop probe and the sweep did (one line each).
    """
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
        lines.append(f"No candidate found: {NOTHING_FOUND}.")
    lines += [f"  {note[0].upper()}{note[1:]}." for note in notes]
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


def format_results(results: Sequence[CandidateResult], *, notes: Sequence[str] = ()) -> str:
    """One line per candidate for ``pia-mqtt detect-gateway``: address, source, verdict, CN.

    ``notes`` (what the hop probe and the sweep did) follow the table.
    """
    rows: list[tuple[str, str, str]] = []
    for result in results:
        cand, found = result.candidate, result.probe
        where = f"{cand.source} ({cand.detail})" if cand.detail else cand.source
        if found.ok and found.cert is not None:
            verdict = f"OK  CN={found.cert.server_name}"
        else:
            verdict = found.verdict.value + (f": {found.detail}" if found.detail else "")
        rows.append((cand.address, where, verdict))
    tail = [f"({note})" for note in notes]
    if not rows:
        return "\n".join([f"no gateway candidates found ({NOTHING_FOUND})", *tail])
    width_a = max(len(r[0]) for r in rows)
    width_s = max(len(r[1]) for r in rows)
    table = [f"{a:<{width_a}}  {s:<{width_s}}  {v}" for a, s, v in rows]
    return "\n".join(table + tail)

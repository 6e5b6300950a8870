"""Cost of one redact() call (one log line) after many token/signature renewals.

``python -m benchmarks.redact_registry``: registers N tokens and payload+signature pairs
the way the PIA client does (``kind="token"``/``"signature"``), then times redact() on a
typical log line. Before the registry was bounded the cost grew with N (7 ms at 10,000).
"""

from __future__ import annotations

import time
import timeit

from pia_mqtt import redact

LINE = "bindPort for port 51234 on PIA gateway 10.13.128.1:19999 (milano402): OK " * 2


def measure(renewals: int) -> tuple[int, float]:
    """Registry size and microseconds per redact() call after ``renewals`` renewals."""
    redact._known = {"hunter2-pia-password"}  # noqa: SLF001 - a fresh registry per row
    redact._rotating = {}  # noqa: SLF001
    for n in range(renewals):
        redact.register(f"token-{n:08d}-xxxxxxxx", kind="token")
        redact.register(f"payload-{n:08d}", f"signature-{n:08d}", kind="signature")
    calls = 2000
    seconds = timeit.timeit(lambda: redact.redact(LINE), number=calls, timer=time.perf_counter)
    return redact.size(), seconds / calls * 1e6


def main() -> None:
    """Print one row per renewal count."""
    print(f"{'renewals':>10} {'registered':>11} {'us per redact()':>16}")
    for renewals in (0, 100, 1_000, 10_000):
        size, micros = measure(renewals)
        print(f"{renewals:>10} {size:>11} {micros:>16.1f}")


if __name__ == "__main__":
    main()

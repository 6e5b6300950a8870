"""Scrub secrets from text before it is logged, raised or published.

Two layers: query parameters and JSON fields that carry secrets by name (``token``,
``payload``, ``signature``, ``password``...) are masked wherever they appear, and every
secret value the process knows (passwords, tokens, signatures) is registered with
:func:`register` and replaced wherever it appears, even inside a library's error text.

The registry stays small: passwords and API keys are kept for the life of the process,
while tokens and signatures are registered under a ``kind`` and only the newest
:data:`KEEP_GENERATIONS` of each kind are kept (a new token retires the one before the
last). Without that, every token and signature ever fetched stayed, and a log call
after 10,000 of them took 7 ms.
"""

from __future__ import annotations

import re
import threading

_MASK = "***"
_SECRET_NAMES = (
    r"token|payload|signature|password|passwd|pass|api_?key|username|"  # noqa: S105
    r"x-api-key|authorization|cookie|set-cookie"
)
_QUERY_RE = re.compile(rf"(?i)([?&;](?:{_SECRET_NAMES})=)[^&\s'\"#]*")
_JSON_RE = re.compile(rf"(?i)(['\"](?:{_SECRET_NAMES})['\"]\s*:\s*)(['\"])(?:\\.|(?!\2).)*\2")
_HEADER_RE = re.compile(
    r"(?i)((?:x-api-key|authorization|cookie|set-cookie)\s*[:=]\s*)"
    r"(?:(?:bearer|basic|digest)\s+)?[^\s,;'\"]+"
)
# user:password@ in a URL (QBITTORRENT_HOST, GLUETUN_CONTROL_URL ...)
_USERINFO_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")

_lock = threading.Lock()
_known: set[str] = set()  # passwords, API keys: for the life of the process
# kind -> the newest generations first (a generation: the values registered together)
_rotating: dict[str, list[frozenset[str]]] = {}
# The current one, and the one before it (a saved lease still tried on a new gateway).
KEEP_GENERATIONS = 2
# Values shorter than this are too likely to appear in ordinary text (a port, "admin").
_MIN_SECRET_LEN = 4


def register(*secrets: str | None, kind: str | None = None) -> None:
    """Remember secret values so that :func:`redact` removes them from any text.

    Without ``kind`` they are kept for good (passwords, API keys). With a ``kind``
    (``token``, ``signature``) they form that kind's newest generation, and generations
    older than :data:`KEEP_GENERATIONS` are forgotten; registering a generation again (a
    keep-alive binding the same signature) only makes it the newest.
    """
    values = frozenset(s for s in secrets if s and len(s) >= _MIN_SECRET_LEN)
    if not values:
        return
    with _lock:
        if kind is None:
            _known.update(values)
            return
        older = [generation for generation in _rotating.get(kind, []) if generation != values]
        _rotating[kind] = [values, *older][:KEEP_GENERATIONS]


def size() -> int:
    """How many secret values are registered now (bounded; for tests and diagnostics)."""
    with _lock:
        return len(_all())


def _all() -> set[str]:
    return _known.union(*(g for generations in _rotating.values() for g in generations))


def redact(text: object) -> str:
    """Return ``str(text)`` with every known secret and secret-named field masked."""
    out = str(text)
    with _lock:
        known = sorted(_all(), key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, _MASK)
    out = _QUERY_RE.sub(rf"\1{_MASK}", out)
    out = _JSON_RE.sub(rf"\1\2{_MASK}\2", out)
    out = _USERINFO_RE.sub(rf"\1{_MASK}@", out)
    return _HEADER_RE.sub(rf"\1{_MASK}", out)


def describe(exc: BaseException) -> str:
    """The exception's message as one redacted line (its type name when it has none)."""
    lines = [line for line in redact(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

"""Scrub secrets from text before it is logged, raised or published.

Two layers: query parameters and JSON fields that carry secrets by name (``token``,
``payload``, ``signature``, ``password``...) are masked wherever they appear, and every
secret value the process knows (passwords, tokens, signatures) is registered with
:func:`register` and replaced wherever it appears, even inside a library's error text.
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
_known: set[str] = set()
# Values shorter than this are too likely to appear in ordinary text (a port, "admin").
_MIN_SECRET_LEN = 4


def register(*secrets: str | None) -> None:
    """Remember secret values so that :func:`redact` removes them from any text."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET_LEN:
                _known.add(secret)


def redact(text: object) -> str:
    """Return ``str(text)`` with every known secret and secret-named field masked."""
    out = str(text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
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

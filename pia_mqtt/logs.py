"""Logging setup: one line per record, text or JSON, always redacted."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from pia_mqtt.redact import redact


class RedactingFormatter(logging.Formatter):
    """The usual text line, with every known secret masked (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format, then scrub."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log collectors, scrubbed like the text form."""

    def format(self, record: logging.LogRecord) -> str:
        """Format as JSON, then scrub."""
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(document))


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every record to stderr in the chosen format; quiet chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # urllib3 logs full URLs (with tokens and signatures) at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)

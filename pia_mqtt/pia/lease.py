"""The file that keeps the lease (payload + signature = port) across restarts.

The lease itself and the parsing of PIA's getSignature reply are in
:mod:`pia_mqtt.pia.signature`; their names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import stat
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from pia_mqtt.atomic import UnsafeFileError, atomic_write, ensure_folder, read_regular
from pia_mqtt.core.model import GatewayTarget, valid_port
from pia_mqtt.errors import OutputError, PiaReplyError
from pia_mqtt.pia.signature import RENEW_MARGIN, Lease, clock_warning, parse_signature_reply

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "MAX_STATE_BYTES",
    "RENEW_MARGIN",
    "Lease",
    "LeaseStore",
    "clock_warning",
    "parse_signature_reply",
]

log = logging.getLogger(__name__)

# A saved lease is a few hundred bytes; anything far larger is not one (and is not read).
MAX_STATE_BYTES = 64 * 1024


class LeaseStore:
    """The saved getSignature reply and the last published port (``STATE_FILE``), mode 0600.

    Replaced atomically. ``last_port`` outlives the lease: a new_port request drops the
    signature but the next start still knows which port the hook and events compare to.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_port: int | None = None

    def load(self) -> Lease | None:
        """The saved lease, or None when there is none or it is unreadable (logged).

        Never blocks (a FIFO is refused) and never reads more than :data:`MAX_STATE_BYTES`;
        a good lease readable by others is rewritten with mode 0600.
        """
        read = self._read_text()
        document = None if read is None else self._parse(read[0])
        if document is None or ("reply" not in document and "last_port" in document):
            return None  # nothing saved, or only the last port (after a new_port request)
        try:
            lease = parse_signature_reply(str(document["reply"]))
        except (KeyError, PiaReplyError):
            log.warning(
                "Ignoring saved lease %s: it is corrupt or truncated; a new port will be requested",
                self.path,
            )
            return None
        if read is not None and read[1] & 0o077:
            self._tighten(*read)
        return lease

    def _tighten(self, text: str, mode: int) -> None:
        """The signature is a credential for the port: rewrite the file as 0600, same text."""
        try:
            atomic_write(self.path, text, mode=0o600)
        except OutputError as exc:
            log.warning(
                "Saved lease %s has mode %o and cannot be rewritten: %s", self.path, mode, exc
            )
        else:
            log.info("Saved lease %s had mode %o: rewritten with mode 600", self.path, mode)

    def load_gateway(self) -> GatewayTarget | None:
        """The gateway saved with the lease (address, certificate name), or None.

        Only a hint for the next start (tried first, one handshake); anything unreadable
        means full detection, so errors are not logged twice (:meth:`load` reports them).
        """
        document = self._read_document(quiet=True) or {}
        try:
            saved = document["gateway"]
            address, hostname = str(saved["address"]), str(saved["hostname"])
            IPv4Address(address)
        except (ValueError, KeyError, TypeError):
            return None
        return GatewayTarget(address, hostname, "saved") if hostname else None

    def last_port(self) -> int | None:
        """The last port published, remembered across restarts (None on a first ever start).

        Files written before ``last_port`` existed have the lease's ``port``, which was the
        published port.
        """
        document = self._read_document(quiet=True)
        if document is None:
            return None
        port = document.get("last_port", document.get("port"))
        self._last_port = port if valid_port(port) else None
        return self._last_port

    def remember(self, port: int) -> None:
        """Record ``port`` as the last published one, keeping the saved lease; OutputError."""
        if not valid_port(port) or port == self._last_port:
            return
        document = self._read_document(quiet=True) or {}
        document["last_port"] = port
        self._write(document)
        self._last_port = port

    def _read_document(self, *, quiet: bool = False) -> dict[str, Any] | None:
        read = self._read_text(quiet=quiet)
        return None if read is None else self._parse(read[0], quiet=quiet)

    def _read_text(self, *, quiet: bool = False) -> tuple[str, int] | None:
        """The file's text and mode bits; None when missing or unusable (a FIFO, too big)."""
        try:
            data, mode = read_regular(self.path, limit=MAX_STATE_BYTES)
            return data.decode("utf-8"), mode
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, UnsafeFileError) as exc:
            if not quiet:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                log.warning(
                    "Ignoring saved lease %s: cannot read it (%s); a new port will be "
                    "requested; point STATE_FILE at a regular file",
                    self.path,
                    reason,
                )
            return None

    def _parse(self, text: str, *, quiet: bool = False) -> dict[str, Any] | None:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict):
            if not quiet:
                log.warning(
                    "Ignoring saved lease %s: it is corrupt or truncated; a new port will be "
                    "requested",
                    self.path,
                )
            return None
        return document

    def _write(self, document: dict[str, Any]) -> None:
        ensure_folder(self.path.parent)
        with contextlib.suppress(OSError):  # a missing file is written; others fail below
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise OutputError(
                    f"writing {self.path} failed: it is not a regular file; point STATE_FILE "
                    "at a file (the folder must be writable)"
                )
        atomic_write(self.path, json.dumps(document, indent=2) + "\n", mode=0o600)

    def save(self, lease: Lease, *, gateway: GatewayTarget | None = None) -> None:
        """Write the raw reply, what it decodes to and the verified gateway; OutputError.

        The lease's port is the port being published, so it is also ``last_port``.
        """
        document: dict[str, Any] = {
            "reply": lease.raw,
            "port": lease.port,
            "expires_at": lease.expires_at.isoformat(),
            "last_port": lease.port,
        }
        if gateway is not None:
            document["gateway"] = {"address": gateway.address, "hostname": gateway.hostname}
        self._write(document)
        self._last_port = lease.port

    def clear(self) -> None:
        """Forget the saved lease (the user asked for a new port), keeping ``last_port``."""
        try:
            if self._last_port is None:
                self.path.unlink(missing_ok=True)
            else:
                self._write({"last_port": self._last_port})
        except OSError as exc:
            raise OutputError(f"removing the saved lease {self.path} failed: {exc}") from exc

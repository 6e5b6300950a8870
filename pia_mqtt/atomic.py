"""Atomic file replacement: readers see the old file or the new one, never a part.

Also :func:`read_regular`, the bounded read of a file we own or were pointed at.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from pia_mqtt.errors import OutputError


def ensure_folder(folder: Path) -> None:
    """Recreate ``folder`` if the volume was emptied or removed while we ran (OutputError)."""
    if folder.exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"creating {folder} failed: {exc.strerror}") from None


def atomic_write(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new file, never a part.

    Temp file in the same folder, fsync, rename, fsync of the folder. Raises OutputError
    naming the path.
    """
    folder = path.parent
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
        tmp_name = None
        _fsync_dir(folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"writing {path} failed: {reason}; check that {folder} exists and is "
            "writable by this user (uid 1000 in the container)"
        ) from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                Path(tmp_name).unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temp files a killed writer left beside ``path``; returns what was removed.

    A SIGKILL between mkstemp and rename leaves ``.<name>.XXXX.tmp`` behind (readers never
    see it: they read ``path``). Only this module makes such names, so they are safe to
    remove at start. Errors are ignored: a read-only folder keeps its leftovers.
    """
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed


class UnsafeFileError(ValueError):
    """A path to read is not a regular file, or is larger than allowed."""


def read_regular(path: Path, *, limit: int) -> tuple[bytes, int]:
    """Read a regular file of at most ``limit`` bytes; return its bytes and mode bits.

    Opened with O_NONBLOCK, so a FIFO (or a device) is refused at once instead of blocking
    the start, and checked with fstat on the open descriptor. Raises FileNotFoundError,
    OSError, or UnsafeFileError (not a regular file, larger than ``limit``).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError("it is not a regular file")
        if info.st_size > limit:
            raise UnsafeFileError(f"it is larger than {limit} bytes ({info.st_size})")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UnsafeFileError(f"it is larger than {limit} bytes")
        return b"".join(chunks), stat.S_IMODE(info.st_mode)
    finally:
        os.close(fd)

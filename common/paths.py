"""Filesystem helpers: the UNIX socket path limit, private directories, atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from common.errors import InvalidArgumentError

__all__ = ["MAX_SOCKET_PATH", "atomic_write", "check_socket_path", "private_dir"]

# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def check_socket_path(path: Path | str) -> Path:
    """Return ``path`` if it fits in sun_path, else raise a clear error."""
    p = Path(path)
    n = len(os.fsencode(str(p)))
    if n > MAX_SOCKET_PATH:
        raise InvalidArgumentError(
            f"socket path {str(p)!r} is {n} bytes; UNIX sockets allow at most "
            f"{MAX_SOCKET_PATH}: choose a shorter runtime directory"
        )
    return p


def private_dir(path: Path | str, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) and force ``mode`` on it."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    p.chmod(mode)
    return p


def atomic_write(path: Path | str, data: bytes | str, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old or the new content, never half.

    Temp file in the same directory, fsync, rename, fsync of the directory.
    """
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

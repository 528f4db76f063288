"""Filesystem helpers: the UNIX socket path limit, private directories, atomic writes.

None of them follows a symbolic link planted where a file or directory is expected:
root runs some of them in directories a service user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tempfile
from pathlib import Path

from common.errors import FailedPreconditionError, InvalidArgumentError

__all__ = ["MAX_SOCKET_PATH", "atomic_write", "check_socket_path", "chown_tree", "private_dir",
           "private_runtime_dir", "user_ids"]

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


def private_dir(path: Path | str, mode: int = 0o700, owner: int | None = None) -> Path:
    """Create ``path`` (and parents), check it is ours, and force ``mode`` on it.

    Args:
        path: the directory.
        mode: its permissions.
        owner: the uid that must own it (default: this process's). Root hands a
            directory it has just created to ``owner``.

    Raises:
        FailedPreconditionError: ``path`` is a symbolic link or not a directory, or is
            owned by someone else (a directory planted by another user is never adopted).
    """
    p = Path(path)
    want = os.geteuid() if owner is None else owner
    p.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise FailedPreconditionError(f"{p} must be a directory, not a symbolic link or a file: remove it") \
            from None
    try:
        st = os.fstat(fd)
        if st.st_uid != want:
            if st.st_uid != os.geteuid() or os.geteuid() != 0:
                raise FailedPreconditionError(
                    f"{p} is owned by uid {st.st_uid}, not {want}: someone else created it; remove it")
            os.fchown(fd, want, -1)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return p


def private_runtime_dir(prefix: str) -> Path:
    """A fresh private directory for sockets: under ``$XDG_RUNTIME_DIR`` when set, else the temp dir.

    The name is random (``mkdtemp``), so nobody can create it first.
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or None
    if base is not None and not Path(base).is_dir():
        base = None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def user_ids(name: str) -> tuple[int, int]:
    """(uid, gid) of user ``name``.

    Raises:
        FailedPreconditionError: there is no such user.
    """
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise FailedPreconditionError(f"user {name!r} does not exist: run the install first") from None
    return pw.pw_uid, pw.pw_gid


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give ``path`` and everything below it to ``uid:gid``, never following a link."""
    os.chown(path, uid, gid, follow_symlinks=False)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        return
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in (*dirs, *files):
            os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)


def atomic_write(path: Path | str, data: bytes | str, mode: int = 0o600, *, uid: int = -1,
                 gid: int = -1) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old or the new content, never half.

    Temp file in the same directory (a fresh name, created exclusively), owner and mode
    set on it, fsync, rename over ``path`` (a link there is replaced, not followed),
    fsync of the directory. ``uid``/``gid`` -1 keep this process's.
    """
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
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

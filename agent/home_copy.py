"""Copy a session home (Clone, and the skeleton into a new session) without trusting it.

A home is written by its container, so it may hold FIFOs, device nodes, sockets,
setuid files and links to anywhere (security review, finding 4). The copy walks it by
file descriptor (``openat`` with ``O_NOFOLLOW``, so no path component can be swapped for
a link), reads regular files only (``O_NONBLOCK``, checked with ``fstat`` after the open,
so nothing blocks), re-creates only links that stay inside the home, drops setuid,
setgid and sticky bits, and stops with a clear error past a size or entry limit.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ResourceExhaustedError

__all__ = ["CONTAINER_HOME", "MAX_DEPTH", "MAX_ENTRIES", "CopyReport", "copy_home"]

CONTAINER_HOME = "/home/claude"  # where a home is mounted: absolute links below it stay inside
MAX_ENTRIES = 1_000_000
MAX_DEPTH = 128
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class CopyReport:
    """What a copy did: bytes and entries copied, and what it left out (relative paths)."""

    bytes_copied: int = 0
    entries: int = 0
    skipped: list[str] = field(default_factory=list)


def _link_stays_inside(rel_dir: str, target: str) -> bool:
    """True if the link ``rel_dir/<name> -> target`` resolves inside the home."""
    if not target or "\0" in target:
        return False
    if target.startswith("/"):
        norm = posixpath.normpath(target)
        return norm == CONTAINER_HOME or norm.startswith(CONTAINER_HOME + "/")
    norm = posixpath.normpath(posixpath.join(rel_dir, target))
    return norm != ".." and not norm.startswith("../")


class _Copier:
    def __init__(self, max_bytes: int, owner: tuple[int, int] | None) -> None:
        self.max_bytes = max_bytes
        self.owner = owner
        self.report = CopyReport()

    def _count(self, rel: str) -> None:
        self.report.entries += 1
        if self.report.entries > MAX_ENTRIES:
            raise ResourceExhaustedError(f"the home holds more than {MAX_ENTRIES} entries (at {rel!r})")

    def _chown(self, name: str, dir_fd: int) -> None:
        if self.owner is not None:
            os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    def copy_dir(self, src_fd: int, dst_fd: int, rel: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ResourceExhaustedError(f"the home nests deeper than {MAX_DEPTH} directories (at {rel!r})")
        with os.scandir(src_fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            self._count(path)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self._subdir(src_fd, dst_fd, entry.name, path, depth, st.st_mode)
            elif stat.S_ISREG(st.st_mode):
                self._file(src_fd, dst_fd, entry.name, path)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.name, dir_fd=src_fd)
                if _link_stays_inside(rel, target):
                    os.symlink(target, entry.name, dir_fd=dst_fd)
                    self._chown(entry.name, dst_fd)
                else:
                    self.report.skipped.append(path)
            else:  # FIFO, socket, character or block device: never opened, never copied
                self.report.skipped.append(path)

    def _subdir(self, src_fd: int, dst_fd: int, name: str, path: str, depth: int, mode: int) -> None:
        try:
            sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
        except OSError:  # replaced by something else since it was listed
            self.report.skipped.append(path)
            return
        try:
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                self.copy_dir(sub_src, sub_dst, path, depth + 1)
                if self.owner is not None:
                    os.fchown(sub_dst, *self.owner)
                os.fchmod(sub_dst, mode & 0o777)
            finally:
                os.close(sub_dst)
        finally:
            os.close(sub_src)

    def _file(self, src_fd: int, dst_fd: int, name: str, path: str) -> None:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=src_fd)
        except OSError:  # gone, or now a link: not followed
            self.report.skipped.append(path)
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device after the listing
                self.report.skipped.append(path)
                return
            out = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dst_fd)
            try:
                while chunk := os.read(fd, _CHUNK):
                    self.report.bytes_copied += len(chunk)
                    if self.report.bytes_copied > self.max_bytes:
                        raise ResourceExhaustedError(
                            f"the home holds more than {self.max_bytes} bytes (at {path!r})"
                        )
                    os.write(out, chunk)
                if self.owner is not None:
                    os.fchown(out, *self.owner)
                os.fchmod(out, st.st_mode & 0o777)  # no setuid, setgid or sticky bit
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(fd)


def copy_home(src: Path, dst: Path, *, max_bytes: int, owner: tuple[int, int] | None = None) -> CopyReport:
    """Copy the tree ``src`` into the new directory ``dst`` (which must not exist).

    Args:
        src: the home to copy; a link here is refused like one further down.
        dst: the copy (its parent must be private to the agent).
        max_bytes: the most file content to copy.
        owner: (uid, gid) to give every copied entry; None keeps the agent's own.

    Returns:
        What was copied and what was left out.

    Raises:
        ResourceExhaustedError: more than ``max_bytes``, :data:`MAX_ENTRIES` entries or
            :data:`MAX_DEPTH` levels (the partial copy is the caller's to remove).
        OSError: ``src`` is not a directory, or a read or write failed.
    """
    copier = _Copier(max_bytes, owner)
    src_fd = os.open(src, _DIR_FLAGS)
    try:
        mode = os.fstat(src_fd).st_mode
        dst.mkdir(mode=0o700)
        dst_fd = os.open(dst, _DIR_FLAGS)
        try:
            copier.copy_dir(src_fd, dst_fd, "", 0)
            if owner is not None:
                os.fchown(dst_fd, *owner)
            os.fchmod(dst_fd, mode & 0o777)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return copier.report

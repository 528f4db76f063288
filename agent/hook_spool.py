"""The per-session hook spool: a directory the CLI's hooks drop events into, the agent drains.

Why a spool directory rather than a FIFO or a socket: the hook must return at once and
never fail, whether the agent runs, is slow or is down. Writing a FIFO blocks while no
reader has it open (the agent is down) and when its buffer is full (the agent is slow);
a UNIX socket needs a client in the image (busybox has none for datagrams) and loses
every event while the agent restarts. Creating a small file and renaming it never
waits on the agent, needs only ``head``/``mv``, survives agent restarts (events written
meanwhile are applied, with their times, when it comes back) and each event appears
whole or not at all (rename). The hook drops events itself when a backlog builds up
(:data:`agent.cli_settings.HOOK_BACKLOG`), so a stopped agent costs at most that many
small files.

The directory is ``<root>/<uuid>/hooks`` on the host (beside the agent-only record, but
its own directory), mounted read-write at :data:`agent.cli_settings.HOOK_SPOOL`; a
container reaches only its own spool, so an event can only speak for its own session.
Everything in it is untrusted: entries are opened relative to the directory without
following links and without blocking, only regular files are read, at most
:data:`MAX_EVENT_BYTES` each and :data:`MAX_EVENTS_PER_DRAIN` per drain; everything
examined is removed, and at most :data:`MAX_ENTRIES_PER_DRAIN` entries are examined per
drain, so a flood costs the agent a bounded amount of work per poll.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from agent.cli_settings import HOOK_MAX_BYTES

__all__ = ["MAX_ENTRIES_PER_DRAIN", "MAX_EVENTS_PER_DRAIN", "MAX_EVENT_BYTES", "Drained", "SpoolEntry",
           "clear_spool", "drain_spool", "prepare_spool"]

MAX_EVENT_BYTES = HOOK_MAX_BYTES
MAX_EVENTS_PER_DRAIN = 64
MAX_ENTRIES_PER_DRAIN = 1024
STALE_TEMP_SECONDS = 60.0
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass(frozen=True)
class SpoolEntry:
    """One event file: when it was written (its mtime, ns) and its bytes (bounded)."""

    mtime_ns: int
    name: str
    data: bytes


@dataclass(frozen=True)
class Drained:
    """What one drain found: the events in write order, and what it threw away."""

    events: list[SpoolEntry]
    discarded: int = 0        # not regular files, too large, or over the per-drain limit


def prepare_spool(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Create (or empty) the spool before the container starts: no stale event survives a restart."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(mode=0o700, exist_ok=True)
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)
    clear_spool(path)


def clear_spool(path: Path) -> int:
    """Remove every entry of the spool (bounded by the directory's size); return how many."""
    removed = 0
    try:
        dfd = os.open(path, _DIR)
    except OSError:
        return 0
    try:
        for name in os.listdir(dfd):
            _remove(dfd, name)
            removed += 1
    finally:
        os.close(dfd)
    return removed


def _remove(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=dfd, ignore_errors=True)
    except OSError:
        pass


def drain_spool(path: Path) -> Drained:
    """Read and remove the waiting events (see the module docstring for the bounds)."""
    try:
        dfd = os.open(path, _DIR)
    except OSError:
        return Drained([])
    events: list[SpoolEntry] = []
    discarded = 0
    now = time.time()
    try:
        with os.scandir(dfd) as it:
            names = []
            for n, entry in enumerate(it):
                if n >= MAX_ENTRIES_PER_DRAIN:
                    break
                names.append(entry.name)
        for name in sorted(names):
            if name.startswith("."):
                # A hook writing right now; removed only when it is clearly left over.
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if now - st.st_mtime > STALE_TEMP_SECONDS:
                        _remove(dfd, name)
                continue
            entry_ = _read(dfd, name) if len(events) < MAX_EVENTS_PER_DRAIN else None
            if entry_ is None:
                discarded += 1
            else:
                events.append(entry_)
            _remove(dfd, name)
    finally:
        os.close(dfd)
    events.sort(key=lambda e: (e.mtime_ns, e.name))
    return Drained(events, discarded)


def _read(dfd: int, name: str) -> SpoolEntry | None:
    try:
        fd = os.open(name, _READ, dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_EVENT_BYTES:
            return None
        data = os.read(fd, MAX_EVENT_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return SpoolEntry(st.st_mtime_ns, name, data) if len(data) <= MAX_EVENT_BYTES else None

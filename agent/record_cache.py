"""Parsed session records kept in memory, each re-read only when its files changed on disk.

The record on disk stays the truth: every read first takes the *stamp* of the session
directory and of its ``session.json`` (``lstat`` of each: device, inode, type, size,
mtime and ctime in nanoseconds), and a kept record is served only while both stamps are
unchanged. The store's own writes replace the file (a new inode); an edit in place
changes mtime and ctime (ctime cannot be set back from user space); a file added to or
removed from the directory (the layout check, a rejected record) changes the
directory's. The stamp is taken *before* the file is read, so a change during the read
leaves a stamp that no longer matches, and the record is read again next time.

File times come from a coarse clock (a kernel tick, or whole seconds on some file
systems), so two changes within one tick can carry the same times. A record is
therefore kept only once its newest ctime is :data:`SETTLED_NS` older than the clock
after the read (git's "racily clean" rule): until then it is read on every call.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from time import time_ns

from agent.sessions import SessionRecord

__all__ = ["SETTLED_NS", "RecordCache", "Stamp", "stamp_of"]

SETTLED_NS = 3_000_000_000   # 3 s: beyond any file system's timestamp granularity (FAT: 2 s)

# (dev, ino, mode, size, mtime_ns, ctime_ns) of the directory, then of the record.
Stamp = tuple[int, int, int, int, int, int, int, int, int, int, int, int]


def _fields(st: os.stat_result) -> tuple[int, int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def stamp_of(session_dir: Path, record: str) -> Stamp | None:
    """The stamp of ``session_dir`` and of its ``record`` file (links not followed); None when
    either is missing, the directory is not a directory, or the record is not a regular file."""
    try:
        d = os.stat(session_dir, follow_symlinks=False)
        r = os.stat(session_dir / record, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISDIR(d.st_mode) or not stat.S_ISREG(r.st_mode):
        return None
    return (*_fields(d), *_fields(r))


@dataclass(frozen=True)
class _Kept:
    stamp: Stamp
    record: SessionRecord


class RecordCache:
    """Records by session id, each with the stamp it was read under.

    Safe to use from several threads: each entry is replaced whole, and a lost update
    only costs a read.
    """

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}

    def get(self, session_id: str, stamp: Stamp | None) -> SessionRecord | None:
        """The kept record of ``session_id`` if it was read under ``stamp``, else None."""
        kept = self._kept.get(session_id)
        if stamp is None or kept is None or kept.stamp != stamp:
            return None
        return kept.record

    def put(self, session_id: str, stamp: Stamp | None, record: SessionRecord | None,
            now_ns: int | None = None) -> None:
        """Keep ``record``, read after ``stamp`` was taken, once its files have settled.

        ``now_ns`` is the clock after the read (default: now). A record that is None, has
        no stamp or changed within :data:`SETTLED_NS` of ``now_ns`` is not kept (and any
        older entry is dropped).
        """
        now = time_ns() if now_ns is None else now_ns
        if record is None or stamp is None or now - max(stamp[5], stamp[11]) < SETTLED_NS:
            self._kept.pop(session_id, None)
            return
        self._kept[session_id] = _Kept(stamp, record)

    def forget(self, session_id: str) -> None:
        """Drop ``session_id`` (written or deleted through the store)."""
        self._kept.pop(session_id, None)

    def keep_only(self, session_ids: set[str]) -> None:
        """Drop every session not in ``session_ids`` (gone from disk)."""
        for sid in list(self._kept):   # a copy made in one step: other threads may add meanwhile
            if sid not in session_ids:
                self._kept.pop(sid, None)

    def __len__(self) -> int:
        return len(self._kept)

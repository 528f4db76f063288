"""Move sessions from the old layout (the record inside the home) to the new one.

Old: ``<root>/<uuid>/`` is the home mounted into the container, ``session.json`` inside
it, where the container could replace it (security review, finding 2). New:
``<root>/<uuid>/session.json`` beside ``<root>/<uuid>/home/``, and only ``home`` is mounted.

Each move is three renames through ``<root>/.migrating-<uuid>`` (nothing is copied, so
nothing is lost, and a running container keeps its mount): make the private directory,
rename the old directory into it as ``home``, rename the record out of the home, rename
the whole into place. A crash leaves a ``.migrating-`` directory that the next start
finishes (or removes when it is still empty). A running container keeps working on its
moved home; it gets the new mount at its next start.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.activity import ACTIVITY_FILE, HOOKS_DIR
from agent.event_log import LOG_FILE
from agent.records import RECORD
from agent.sessions import is_session_id
from common.logging import get_logger

__all__ = ["HOME", "MIGRATING", "is_new_layout", "migrate_sessions"]

log = get_logger(__name__)
HOME = "home"
MIGRATING = ".migrating-"
_REJECTED = f"{RECORD}.rejected"
# What the agent keeps beside the home: the record, the activity, the event log, the hook spool.
_AGENT_NAMES = (HOME, RECORD, _REJECTED, ACTIVITY_FILE, HOOKS_DIR, LOG_FILE, f"{LOG_FILE}.1")
_AGENT_TEMPS = (f".{RECORD}.", f".{ACTIVITY_FILE}.")


def is_new_layout(directory: Path | int) -> bool:
    """True if ``directory`` (a path or an open fd) holds only ``home/`` and the agent's files
    (the record and its temp or rejected files, the activity, the event log, the hook spool).

    Every home the agent ever made holds ``.claude/``, so an old-layout home never
    passes for a new session directory.
    """
    names = os.listdir(directory)
    if HOME not in names:
        return False
    if isinstance(directory, int):
        home_mode = os.stat(HOME, dir_fd=directory, follow_symlinks=False).st_mode
    else:
        home_mode = os.lstat(directory / HOME).st_mode
    if not stat.S_ISDIR(home_mode):
        return False
    return all(n in _AGENT_NAMES or n.startswith(_AGENT_TEMPS) for n in names)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(root: Path, work: Path, session_id: str) -> None:
    home = work / HOME
    if os.path.lexists(home / RECORD) and not os.path.lexists(work / RECORD):
        os.rename(home / RECORD, work / RECORD)  # a rename never opens it, whatever it is
    _fsync_dir(work)
    os.rename(work, root / session_id)
    _fsync_dir(root)


def _recover(root: Path, work: Path, session_id: str) -> str | None:
    if (root / session_id).exists() or not (work / HOME).is_dir():
        if not os.listdir(work):
            work.rmdir()  # crashed before the home moved in: nothing to keep
            return None
        log.error("session migration left both directories: kept for the operator",
                  session=session_id, dir=str(work))
        return None
    _finish(root, work, session_id)
    return session_id


def migrate_sessions(root: Path) -> list[str]:
    """Move every old-layout session under ``root`` to the new layout; return their ids.

    Also finishes migrations a crash interrupted. Entries that are links, not
    directories or not named by a UUID are left alone.
    """
    moved: list[str] = []
    if not root.is_dir():
        return moved
    for entry in sorted(root.iterdir()):
        sid = entry.name.removeprefix(MIGRATING)
        recovering = entry.name.startswith(MIGRATING) and is_session_id(sid) and entry.is_dir()
        try:
            if recovering and _recover(root, entry, sid):
                moved.append(sid)
        except OSError as e:
            log.warning("interrupted session move not finished", session=sid, error=str(e))
    for entry in sorted(root.iterdir()):
        if not is_session_id(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        work = root / f"{MIGRATING}{entry.name}"
        try:
            if not os.listdir(entry) or is_new_layout(entry):
                continue
            work.mkdir(mode=0o700)
            os.rename(entry, work / HOME)
            _finish(root, work, entry.name)
        except OSError as e:  # left as it is (or resumable): the other sessions still move
            log.warning("session not moved to the new layout", session=entry.name, error=str(e))
            continue
        moved.append(entry.name)
    if moved:
        log.info("moved sessions to the new layout (record beside the home)", sessions=moved)
    return moved

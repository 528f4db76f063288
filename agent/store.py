"""Session directories on disk: ``<root>/<uuid>/`` holding the home and ``session.json``.

Crash safety: a new or cloned session is assembled in ``<root>/.staging-<uuid>`` and
renamed into place only once ``session.json`` is complete; a deletion first renames the
directory to ``<root>/.deleting-<uuid>``; ``session.json`` is replaced atomically (temp
file, fsync, rename). Listing considers only directories named by a UUID with a valid
``session.json``, so a crash at any point leaves the old or the new session, never a
broken one; leftovers are removed by :meth:`SessionStore.remove_leftovers` at start.
All methods block (file I/O); the async callers run them in a thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.sessions import SessionRecord, is_session_id
from common.errors import NotFoundError, UnavailableError
from common.logging import get_logger
from common.paths import atomic_write
from common.session_rules import printable

__all__ = ["SHARED_LINKS", "SessionStore", "format_time", "parse_time"]

log = get_logger(__name__)
RECORD = "session.json"
SHARED_LINKS = ("settings.json", "settings.local.json", ".credentials.json", "plugins")
SHARED_TARGET = "/home/claude/.claude-shared"   # where the shared config is mounted in-container
_STAGING = ".staging-"
_DELETING = ".deleting-"
_FRACTION = re.compile(r"\.(\d+)")


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (microseconds)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 (also Go's nanosecond form) into an aware UTC datetime."""
    s = text.strip().replace("Z", "+00:00")
    s = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
    t = datetime.fromisoformat(s)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _to_json(r: SessionRecord) -> str:
    data: dict[str, Any] = {
        "uuid": r.id,
        "name": r.name,
        "created_at": format_time(r.created_at),
        "last_accessed": format_time(r.last_accessed),
    }
    if r.port:
        data["port"] = r.port
    data["protocol"] = r.protocol
    if r.dns_name:
        data["dns_name"] = r.dns_name
    return json.dumps(data, indent=2) + "\n"


def _from_json(text: str, dir_name: str) -> SessionRecord:
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("uuid") != dir_name:
        raise ValueError("uuid does not match the directory")
    return SessionRecord(
        id=dir_name,
        name=str(d.get("name", "")),
        created_at=parse_time(str(d["created_at"])),
        last_accessed=parse_time(str(d.get("last_accessed") or d["created_at"])),
        port=int(d.get("port", 0)),
        protocol=str(d.get("protocol") or "tcp"),
        dns_name=str(d.get("dns_name") or ""),
    )


class SessionStore:
    """The session directories under ``root``."""

    def __init__(self, root: Path, skel: Path) -> None:
        self.root = root
        self.skel = skel

    def session_dir(self, session_id: str) -> Path:
        """``<root>/<uuid>``."""
        return self.root / session_id

    def remove_leftovers(self) -> list[str]:
        """Remove half-made and half-deleted directories from an earlier crash."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if entry.name.startswith((_STAGING, _DELETING)) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    def list(self) -> list[SessionRecord]:
        """Every valid session, newest ``last_accessed`` first."""
        out: list[SessionRecord] = []
        if not self.root.is_dir():
            return out
        for entry in self.root.iterdir():
            rec = self._read(entry) if is_session_id(entry.name) else None
            if rec is not None:
                out.append(rec)
        out.sort(key=lambda r: r.last_accessed, reverse=True)
        return out

    def _read(self, directory: Path) -> SessionRecord | None:
        try:
            return _from_json((directory / RECORD).read_text(), directory.name)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping unreadable session record", dir=str(directory), error=str(e))
            return None

    def get(self, session_id: str) -> SessionRecord:
        """The record of ``session_id``.

        Raises:
            NotFoundError: no such session (v2.0.0 message).
        """
        rec = self._read(self.session_dir(session_id)) if is_session_id(session_id) else None
        if rec is None:
            raise NotFoundError(f'session "{printable(session_id)}" does not exist')
        return rec

    def write(self, record: SessionRecord) -> None:
        """Replace ``session.json`` atomically (0644)."""
        atomic_write(self.session_dir(record.id) / RECORD, _to_json(record), mode=0o644)

    def create(self, record: SessionRecord) -> None:
        """Make the session directory from the skeleton, with the shared-config links.

        Raises:
            UnavailableError: the directory could not be made (disk full, permissions).
        """
        stage = self.root / f"{_STAGING}{record.id}"
        try:
            if self.skel.is_dir():
                shutil.copytree(self.skel, stage, symlinks=True)
            else:
                stage.mkdir(mode=0o750, parents=True)
            self._link_shared(stage)
            self._finish(stage, record)
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise UnavailableError(f"could not create session directory: {e}") from None

    def clone(self, source_id: str, record: SessionRecord) -> None:
        """Copy the whole home of ``source_id`` (also while it runs) into a new session.

        Raises:
            NotFoundError: the source does not exist.
            UnavailableError: the copy failed.
        """
        self.get(source_id)
        stage = self.root / f"{_STAGING}{record.id}"
        try:
            shutil.copytree(self.session_dir(source_id), stage, symlinks=True,
                            ignore=shutil.ignore_patterns(RECORD, f".{RECORD}.*"))
            self._finish(stage, record)
        except (OSError, shutil.Error) as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise UnavailableError(f"could not copy session {source_id}: {e}") from None

    def delete(self, session_id: str) -> None:
        """Remove the session directory (renamed away first, so it never half-exists).

        Raises:
            NotFoundError: no such session.
        """
        self.get(session_id)
        doomed = self.root / f"{_DELETING}{session_id}"
        os.replace(self.session_dir(session_id), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _finish(self, stage: Path, record: SessionRecord) -> None:
        atomic_write(stage / RECORD, _to_json(record), mode=0o644)
        os.replace(stage, self.session_dir(record.id))

    @staticmethod
    def _link_shared(home: Path) -> None:
        claude = home / ".claude"
        claude.mkdir(mode=0o700, exist_ok=True)
        claude.chmod(0o700)
        for name in SHARED_LINKS:
            link = claude / name
            if not link.is_symlink() and not link.exists():
                link.symlink_to(f"{SHARED_TARGET}/{name}")

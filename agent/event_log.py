"""Each session's event log: what happened to it, when and by whom, bounded on disk.

``<root>/<uuid>/events.log`` beside the record (agent-only), one JSON object per line
(:class:`common.domain.SessionLogEntry`). When it passes ``max_bytes`` it is renamed to
``events.log.1`` (replacing the older one), so a session keeps at most twice that.
Appends are single ``write`` calls on an ``O_APPEND`` descriptor, so a line is whole or
absent; a line that does not parse (a crash mid-write, a full disk) is skipped on read.
Followers (``SessionLog`` with follow) get every new entry from a bounded queue; one that
falls behind is ended rather than slowing the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from common.domain import SessionLogEntry
from common.errors import ResourceExhaustedError, UnavailableError
from common.logging import get_logger
from common.session_rules import printable

__all__ = ["DEFAULT_LIMIT", "LOG_FILE", "MAX_LIMIT", "EventLog"]

log = get_logger(__name__)
LOG_FILE = "events.log"
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
MAX_LINE = 4096
_FOLLOW_QUEUE = 256


def _line(entry: SessionLogEntry) -> bytes:
    attrs = {printable(k)[:64]: printable(v)[:512] for k, v in list(entry.attributes.items())[:16]}
    data = {"time": entry.time.astimezone(UTC).isoformat(), "kind": printable(entry.kind)[:64],
            "actor": printable(entry.actor)[:200], "detail": printable(entry.detail)[:1000],
            "attributes": attrs}
    return (json.dumps(data) + "\n").encode()


def _entry(line: bytes) -> SessionLogEntry | None:
    try:
        d = json.loads(line)
        when = datetime.fromisoformat(d["time"])
        attrs = d.get("attributes", {})
        if not isinstance(attrs, dict):
            return None
        return SessionLogEntry(when, str(d["kind"]), str(d.get("actor", "")), str(d.get("detail", "")),
                               {str(k): str(v) for k, v in attrs.items()})
    except (ValueError, KeyError, TypeError):
        return None


class EventLog:
    """The event logs of every session under ``root``.

    Args:
        root: the sessions root.
        max_bytes: the size at which a log is rotated.
    """

    def __init__(self, root: Path, *, max_bytes: int = 256 * 1024) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._followers: dict[str, set[asyncio.Queue[SessionLogEntry | None]]] = {}
        self._closing = False

    def path(self, session_id: str) -> Path:
        """``<root>/<uuid>/events.log``."""
        return self.root / session_id / LOG_FILE

    def record(self, session_id: str, kind: str, detail: str = "", *, actor: str = "",
               attributes: dict[str, str] | None = None, when: datetime | None = None) -> SessionLogEntry:
        """Append one entry (never raises: a log that cannot be written is logged) and tell followers."""
        entry = SessionLogEntry(when or datetime.now(UTC), kind, actor, detail, dict(attributes or {}))
        path = self.path(session_id)
        if path.parent.is_dir():
            try:
                self._append(path, _line(entry))
            except OSError as e:
                log.warning("session event log not written", session=session_id, error=str(e))
        for queue in list(self._followers.get(session_id, ())):
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                self._followers[session_id].discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)   # ends that follower: it fell behind
        return entry

    def close(self) -> None:
        """End every follower (the agent is stopping): each raises UnavailableError next."""
        self._closing = True
        for followers in self._followers.values():
            for queue in followers:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(None)

    def _append(self, path: Path, line: bytes) -> None:
        try:
            if path.stat().st_size + len(line) > self.max_bytes:
                os.replace(path, path.with_name(LOG_FILE + ".1"))
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self, session_id: str, limit: int = DEFAULT_LIMIT) -> list[SessionLogEntry]:
        """The last ``limit`` entries, oldest first (blocking I/O)."""
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        last: deque[SessionLogEntry] = deque(maxlen=limit)
        path = self.path(session_id)
        for p in (path.with_name(LOG_FILE + ".1"), path):
            try:
                with p.open("rb") as f:
                    for line in f:
                        entry = _entry(line[:MAX_LINE])
                        if entry is not None:
                            last.append(entry)
            except OSError:
                continue
        return list(last)

    async def follow(self, session_id: str, limit: int = DEFAULT_LIMIT) -> AsyncIterator[SessionLogEntry]:
        """The last ``limit`` entries, then every new one until the caller stops.

        Raises:
            ResourceExhaustedError: the caller fell behind (it may follow again).
            UnavailableError: the agent is stopping (:meth:`close`).
        """
        if self._closing:
            raise UnavailableError("the agent is stopping: follow again once it is back")
        queue: asyncio.Queue[SessionLogEntry | None] = asyncio.Queue(maxsize=_FOLLOW_QUEUE)
        self._followers.setdefault(session_id, set()).add(queue)   # before reading: nothing falls between
        try:
            backlog = await asyncio.to_thread(self.read, session_id, limit)
            seen = {(e.time, e.kind, e.detail) for e in backlog[-_FOLLOW_QUEUE:]}
            for entry in backlog:
                yield entry
            while True:
                entry_ = await queue.get()
                if entry_ is None and self._closing:
                    raise UnavailableError("the agent is stopping: follow again once it is back")
                if entry_ is None:
                    raise ResourceExhaustedError("the log follower fell behind: follow again")
                if (entry_.time, entry_.kind, entry_.detail) in seen:
                    continue
                yield entry_
        finally:
            followers = self._followers.get(session_id)
            if followers is not None:
                followers.discard(queue)
                if not followers:
                    del self._followers[session_id]

"""The domain types every package shares: sessions, their events, attach modes and frames.

These are what the agent's core publishes and what the one agent client
(:mod:`common.client`) returns. They know nothing of gRPC: the wire messages of
``convocate.v1`` are converted to and from them only at the edges
(:mod:`common.proto_convert`, used by the agent's gRPC services and the client).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

__all__ = [
    "AgentInfo",
    "AttachEnded",
    "AttachFrame",
    "AttachMode",
    "AttachStarted",
    "EndReason",
    "LinkState",
    "Session",
    "SessionEvent",
    "SessionEventKind",
    "SessionStatus",
    "TerminalSize",
    "rfc3339",
    "session_status",
]


class AttachMode(StrEnum):
    """How a viewer attaches."""

    DRIVE = "drive"            # read-write; resizes the session
    OBSERVE = "observe"        # read-only; never resizes
    TAKE_OVER = "take_over"    # detaches every other viewer first, then drives


class EndReason(StrEnum):
    """Why an attach stream ended."""

    DETACHED = "detached"
    SESSION_ENDED = "session_ended"
    TAKEN_OVER = "taken_over"
    AGENT_SHUTDOWN = "agent_shutdown"
    BACKGROUNDED = "backgrounded"
    ERROR = "error"


class SessionStatus(StrEnum):
    """The one-letter status the console and ``convocate-host sessions`` show."""

    ORPHAN = "O"       # a pre-v2 local session on the shell host
    ATTACHED = "C"     # running, someone attached
    RUNNING = "R"
    LINGERING = "L"    # a viewer still counted although the container stopped
    STOPPED = "-"


def session_status(*, running: bool, attached: bool, orphan: bool = False) -> SessionStatus:
    """The status letter of a session (the one place it is computed)."""
    if orphan:
        return SessionStatus.ORPHAN
    if running and attached:
        return SessionStatus.ATTACHED
    if running:
        return SessionStatus.RUNNING
    if attached:
        return SessionStatus.LINGERING
    return SessionStatus.STOPPED


class SessionEventKind(StrEnum):
    """What a WatchSessions event says: a snapshot entry, the snapshot's end, or a change."""

    EXISTING = "existing"
    SYNCED = "synced"
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    STARTED = "started"
    STOPPED = "stopped"
    ATTACHED = "attached"
    DETACHED = "detached"


@dataclass(frozen=True)
class Session:
    """One session: its record plus the live state its agent stamps on it."""

    id: str
    name: str
    created_at: datetime | None = None
    last_accessed: datetime | None = None
    port: int = 0
    protocol: str = "tcp"
    dns_name: str = ""
    agent_id: str = ""
    running: bool = False
    attached: bool = False
    viewer_count: int = 0
    image: str = ""
    activity: str = ""

    @property
    def status(self) -> SessionStatus:
        """The status letter (see :func:`session_status`)."""
        return session_status(running=self.running, attached=self.attached)


@dataclass(frozen=True)
class SessionEvent:
    """One WatchSessions event (``session`` is None for SYNCED)."""

    kind: SessionEventKind
    session_id: str = ""
    session: Session | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class LinkState:
    """One direction of the shell <-> agent pair, as seen by one end."""

    up: bool = False
    known: bool = False          # False: nobody has reported on this link yet
    since: datetime | None = None
    last_ok: datetime | None = None
    last_error: str = ""
    dropped_events: int = 0


@dataclass(frozen=True)
class AgentInfo:
    """An agent's answer to Ping."""

    agent_id: str
    version: str = ""
    hostname: str = ""
    server_time: datetime | None = None
    status_link: LinkState | None = None     # the agent's own view of agent -> shell
    current_image: str = ""


@dataclass(frozen=True)
class TerminalSize:
    """The session's terminal size, as the agent applied it."""

    rows: int
    cols: int


@dataclass(frozen=True)
class AttachStarted:
    """The agent opened the viewer."""

    session_id: str
    mode: AttachMode
    viewer_count: int = 0


@dataclass(frozen=True)
class AttachEnded:
    """The agent ended the stream, and why."""

    reason: EndReason
    message: str = ""


# What an attach stream delivers: output bytes, a size notice, started or ended.
AttachFrame = bytes | TerminalSize | AttachStarted | AttachEnded


def rfc3339(when: datetime | None) -> str:
    """``when`` in UTC as RFC 3339 with a ``Z`` (0, 3 or 6 fractional digits); "" for None."""
    if when is None:
        return ""
    t = when.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond % 1000 == 0 and t.microsecond:
        text += f".{t.microsecond // 1000:03d}"
    elif t.microsecond:
        text += f".{t.microsecond:06d}"
    return text + "Z"

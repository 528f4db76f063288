"""The domain types every package shares: sessions, their events, attach modes and frames.

These are what the agent's core publishes and what the one agent client
(:mod:`common.client`) returns. They know nothing of gRPC: the wire messages of
``convocate.v1`` are converted to and from them only at the edges
(:mod:`common.proto_convert`, used by the agent's gRPC services and the client).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

__all__ = [
    "Activity",
    "ActivityState",
    "AgentInfo",
    "AttachEnded",
    "AttachFrame",
    "AttachMode",
    "AttachStarted",
    "EndReason",
    "HostHealth",
    "LinkState",
    "NeedsInputReason",
    "Screen",
    "Session",
    "SessionEvent",
    "SessionEventKind",
    "SessionLogEntry",
    "SessionStatus",
    "TerminalSize",
    "host_health_attributes",
    "host_health_from_attributes",
    "last_known",
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
    UNKNOWN = "?"      # the engine or the agent does not answer: the state is not a fact


def session_status(*, running: bool, attached: bool, orphan: bool = False,
                   unknown: bool = False) -> SessionStatus:
    """The status letter of a session (the one place it is computed)."""
    if orphan:
        return SessionStatus.ORPHAN
    if unknown:
        return SessionStatus.UNKNOWN
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
    ACTIVITY = "activity"      # the session's activity changed


class ActivityState(StrEnum):
    """What a session's CLI is doing, as its hooks report it."""

    UNKNOWN = "unknown"            # no hook has fired yet (or the CLI has no hooks)
    WORKING = "working"            # a prompt was submitted
    NEEDS_INPUT = "needs_input"    # waits for the operator (see :class:`NeedsInputReason`)
    IDLE = "idle"                  # the CLI finished its turn
    STOPPED = "stopped"            # the CLI session ended, or the container stopped


class NeedsInputReason(StrEnum):
    """Why a session needs input ("" when it does not)."""

    NONE = ""
    PERMISSION = "permission"      # a permission request
    QUESTION = "question"          # the CLI asks something (any other notification)
    IDLE_PROMPT = "idle_prompt"    # the prompt has waited for input a while


@dataclass(frozen=True)
class Activity:
    """A session's activity state, since when, and why it needs input (if it does)."""

    state: ActivityState = ActivityState.UNKNOWN
    reason: NeedsInputReason = NeedsInputReason.NONE
    since: datetime | None = None
    message: str = ""              # the CLI's notification text (bounded, printable)

    @property
    def needs_input(self) -> bool:
        """The session waits for the operator."""
        return self.state is ActivityState.NEEDS_INPUT


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
    # Health: True when the engine does not answer (``running`` is then the last known
    # value, read at ``state_known_at``).
    state_unknown: bool = False
    state_known_at: datetime | None = None
    activity: Activity = Activity()

    @property
    def status(self) -> SessionStatus:
        """The status letter (see :func:`session_status`)."""
        return session_status(running=self.running, attached=self.attached, unknown=self.state_unknown)


@dataclass(frozen=True)
class SessionEvent:
    """One WatchSessions event (``session`` is None for SYNCED)."""

    kind: SessionEventKind
    session_id: str = ""
    session: Session | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class SessionLogEntry:
    """One line of a session's event log (created, started, attached, activity, reply, ...)."""

    time: datetime
    kind: str
    actor: str = ""                # who did it (a viewer's client id, "agent", "cli"), if known
    detail: str = ""               # one printable line
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Screen:
    """The last screen of a session, as its tmux pane showed it (plain text)."""

    text: str
    rows: int = 0
    cols: int = 0
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
class HostHealth:
    """An agent host's health: its Docker Engine, free disk under the sessions root, memory, load."""

    engine_up: bool = False
    engine_version: str = ""
    engine_error: str = ""              # why the engine is down, one line
    checked_at: datetime | None = None
    disk_free_bytes: int = 0
    disk_total_bytes: int = 0
    disk_low: bool = False              # below the agent's configured threshold
    mem_available_bytes: int = 0
    mem_total_bytes: int = 0
    load1: float = 0.0
    cpus: int = 0

    @property
    def ok(self) -> bool:
        """The engine answers and the disk is not nearly full."""
        return self.engine_up and not self.disk_low

    def problems(self) -> list[str]:
        """One line per problem (the engine's error, "disk nearly full: ..."); empty when ok."""
        out = []
        if not self.engine_up:
            out.append(self.engine_error or "the Docker Engine does not answer")
        if self.disk_low:
            free, total = _size(self.disk_free_bytes), _size(self.disk_total_bytes)
            out.append(f"disk nearly full: {free} free of {total}")
        return out

    def summary(self) -> str:
        """One line for listings: engine, disk, memory, load."""
        engine = f"engine {self.engine_version or 'up'}" if self.engine_up else "engine DOWN"
        disk = f"disk {_size(self.disk_free_bytes)} free" + (" (LOW)" if self.disk_low else "")
        return f"{engine}, {disk}, mem {_size(self.mem_available_bytes)} free, load {self.load1:.2f}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# Heartbeat attribute names of the host-health fields (the status plane carries strings).
_HEALTH_INTS = ("disk_free_bytes", "disk_total_bytes", "mem_available_bytes", "mem_total_bytes", "cpus")


def host_health_attributes(h: HostHealth) -> dict[str, str]:
    """``h`` as status-event attributes (``engine`` is "up" or "down")."""
    attrs = {"engine": "up" if h.engine_up else "down", "engine_version": h.engine_version,
             "engine_error": h.engine_error, "disk_low": "1" if h.disk_low else "0",
             "load1": f"{h.load1:.2f}", "checked_at": rfc3339(h.checked_at)}
    attrs.update({k: str(getattr(h, k)) for k in _HEALTH_INTS})
    return attrs


def host_health_from_attributes(attrs: dict[str, str]) -> HostHealth | None:
    """The host health in status-event attributes; None when they carry none (older agents).

    The attributes come from an agent: malformed numbers read as 0, never as an error.
    """
    if attrs.get("engine") not in ("up", "down"):
        return None

    def num(key: str) -> int:
        text = attrs.get(key, "")
        return int(text) if text.isdigit() and len(text) <= 20 else 0

    try:
        load1 = float(attrs.get("load1", "0"))
    except ValueError:
        load1 = 0.0
    checked = attrs.get("checked_at", "")
    try:
        checked_at = datetime.fromisoformat(checked) if checked else None
    except ValueError:
        checked_at = None
    return HostHealth(
        engine_up=attrs["engine"] == "up", engine_version=attrs.get("engine_version", ""),
        engine_error=attrs.get("engine_error", ""), checked_at=checked_at,
        disk_low=attrs.get("disk_low") == "1", load1=load1 if load1 == load1 else 0.0,  # noqa: PLR0124 - NaN
        **{k: num(k) for k in _HEALTH_INTS},
    )


@dataclass(frozen=True)
class AgentInfo:
    """An agent's answer to Ping."""

    agent_id: str
    version: str = ""
    hostname: str = ""
    server_time: datetime | None = None
    status_link: LinkState | None = None     # the agent's own view of agent -> shell
    current_image: str = ""
    health: HostHealth | None = None         # None: an agent that does not report it


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


def last_known(when: datetime | None, now: datetime | None = None) -> str:
    """``last known 2m ago`` (s, m, h, d), or ``never known`` for None: how old an unknown state is."""
    if when is None:
        return "never known"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"last known {seconds // size}{unit} ago"
    return f"last known {seconds}s ago"


def rfc3339(when: datetime | None) -> str:
    """``when`` in UTC as RFC 3339 with a ``Z`` (0, 3 or 6 fractional digits); "" for None."""
    if when is None:
        return ""
    t = when if when.tzinfo is UTC else when.astimezone(UTC)
    us = t.microsecond
    spec = "seconds" if not us else "milliseconds" if us % 1000 == 0 else "microseconds"
    return t.replace(tzinfo=None).isoformat(timespec=spec) + "Z"   # isoformat: C, not strftime

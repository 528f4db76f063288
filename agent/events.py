"""The one interface between the agent's operations and whoever wants to hear of them.

The session manager publishes an :class:`AgentEvent` (domain types only, no protobuf)
for every change to an :class:`EventSink`; the status emitter (to the shell) and the
WatchSessions streams are sinks and convert at their edge. ``publish`` must never
block or raise: a sink with a full queue drops the event and counts the drop.

:class:`InboundLinkTracker` records the shell's Ping heartbeats, so the emitter can say
"the shell -> agent direction is silent" through the status stream (the healthy
direction reports the broken one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from common.domain import Session, SessionEvent, SessionEventKind

__all__ = ["AgentEvent", "EventSink", "EventType", "InboundLinkTracker", "session_event"]


class EventType(StrEnum):
    """Event type names (strings on the wire; receivers accept unknown ones)."""

    AGENT_STARTED = "agent.started"
    AGENT_HEARTBEAT = "agent.heartbeat"
    AGENT_SHUTDOWN = "agent.shutdown"
    AGENT_HEALTH = "agent.health"                  # the engine went down or up, the disk low or not
    SESSIONS_MASS_DEATH = "sessions.mass_death"    # several sessions stopped unasked at once
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    SESSION_DELETED = "session.deleted"
    SESSION_STARTED = "session.started"
    SESSION_STOPPED = "session.stopped"
    SESSION_ATTACHED = "session.attached"
    SESSION_DETACHED = "session.detached"
    SESSION_ACTIVITY = "session.activity"          # the CLI's activity changed (state, reason, since)
    IMAGE_LOADED = "image.loaded"
    LINK_CONTROL_STALE = "link.control_stale"      # no Ping from the shell within budget
    LINK_CONTROL_RESTORED = "link.control_restored"


@dataclass(frozen=True)
class AgentEvent:
    """Something that happened on this agent."""

    type: str
    session_id: str = ""
    session: Session | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


_SESSION_KINDS: dict[str, SessionEventKind] = {
    EventType.SESSION_CREATED: SessionEventKind.CREATED,
    EventType.SESSION_UPDATED: SessionEventKind.UPDATED,
    EventType.SESSION_DELETED: SessionEventKind.DELETED,
    EventType.SESSION_STARTED: SessionEventKind.STARTED,
    EventType.SESSION_STOPPED: SessionEventKind.STOPPED,
    EventType.SESSION_ATTACHED: SessionEventKind.ATTACHED,
    EventType.SESSION_DETACHED: SessionEventKind.DETACHED,
    EventType.SESSION_ACTIVITY: SessionEventKind.ACTIVITY,
}


def session_event(event: AgentEvent) -> SessionEvent | None:
    """The WatchSessions event of a session event; None for agent-level events."""
    kind = _SESSION_KINDS.get(event.type)   # StrEnum keys match plain strings too
    if kind is None:
        return None
    return SessionEvent(kind, session_id=event.session_id, session=event.session, time=event.time)


class EventSink(Protocol):
    """Receives events. Implementations must return at once and never raise."""

    def publish(self, event: AgentEvent) -> None: ...


@dataclass
class InboundLinkTracker:
    """When the shell last pinged us (monotonic clock), per client id."""

    last_ping: dict[str, float] = field(default_factory=dict)

    def record_ping(self, client_id: str) -> None:
        """Note a Ping from ``client_id`` (empty ids are recorded as ``unknown``)."""
        self.last_ping[client_id or "unknown"] = time.monotonic()

    def seconds_since_last_ping(self) -> float | None:
        """Seconds since the most recent Ping from anyone; None if never pinged."""
        if not self.last_ping:
            return None
        return time.monotonic() - max(self.last_ping.values())

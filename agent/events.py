"""The one interface between the agent's operations and whoever wants to hear of them.

The Sessions/Attach servicers publish an :class:`AgentEvent` for every change to an
:class:`EventSink`; the status emitter (to the shell) and the WatchSessions streams
are sinks. ``publish`` must never block or raise: a sink with a full queue drops the
event and counts the drop.

:class:`InboundLinkTracker` records the shell's Ping heartbeats, so the emitter can say
"the shell -> agent direction is silent" through the status stream (the healthy
direction reports the broken one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from convocate.v1 import sessions_pb2

__all__ = ["AgentEvent", "EventSink", "EventType", "InboundLinkTracker"]


class EventType:
    """Event type names (strings on the wire; receivers accept unknown ones)."""

    AGENT_STARTED = "agent.started"
    AGENT_HEARTBEAT = "agent.heartbeat"
    AGENT_SHUTDOWN = "agent.shutdown"
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    SESSION_DELETED = "session.deleted"
    SESSION_STARTED = "session.started"
    SESSION_STOPPED = "session.stopped"
    SESSION_ATTACHED = "session.attached"
    SESSION_DETACHED = "session.detached"
    IMAGE_LOADED = "image.loaded"
    LINK_CONTROL_STALE = "link.control_stale"      # no Ping from the shell within budget
    LINK_CONTROL_RESTORED = "link.control_restored"


@dataclass(frozen=True)
class AgentEvent:
    """Something that happened on this agent."""

    type: str
    session_id: str = ""
    session: sessions_pb2.Session | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


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

"""Conversions between the agent's session dataclasses/events and ``convocate.v1`` messages."""

from __future__ import annotations

from datetime import datetime

from convocate.v1 import sessions_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from agent.events import AgentEvent, EventType
from agent.sessions import SessionView

__all__ = ["EVENT_KINDS", "event_to_proto", "timestamp", "view_to_proto"]

EVENT_KINDS: dict[str, sessions_pb2.SessionEventKind.ValueType] = {
    EventType.SESSION_CREATED: sessions_pb2.SESSION_EVENT_KIND_CREATED,
    EventType.SESSION_UPDATED: sessions_pb2.SESSION_EVENT_KIND_UPDATED,
    EventType.SESSION_DELETED: sessions_pb2.SESSION_EVENT_KIND_DELETED,
    EventType.SESSION_STARTED: sessions_pb2.SESSION_EVENT_KIND_STARTED,
    EventType.SESSION_STOPPED: sessions_pb2.SESSION_EVENT_KIND_STOPPED,
    EventType.SESSION_ATTACHED: sessions_pb2.SESSION_EVENT_KIND_ATTACHED,
    EventType.SESSION_DETACHED: sessions_pb2.SESSION_EVENT_KIND_DETACHED,
}


def timestamp(t: datetime) -> Timestamp:
    """A protobuf Timestamp of ``t``."""
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


def view_to_proto(view: SessionView, agent_id: str) -> sessions_pb2.Session:
    """The wire form of a session with its live state."""
    r = view.record
    return sessions_pb2.Session(
        id=r.id,
        name=r.name,
        created_at=timestamp(r.created_at),
        last_accessed=timestamp(r.last_accessed),
        port=r.port,
        protocol=r.protocol,
        dns_name=r.dns_name,
        agent_id=agent_id,
        running=view.running,
        attached=view.attached,
        viewer_count=view.viewer_count,
        image=view.image if view.running else "",
    )


def event_to_proto(event: AgentEvent) -> sessions_pb2.SessionEvent | None:
    """The SessionEvent of a session event, or None for agent-level events."""
    kind = EVENT_KINDS.get(event.type)
    if kind is None:
        return None
    msg = sessions_pb2.SessionEvent(kind=kind, session_id=event.session_id, time=timestamp(event.time))
    if event.session is not None:
        msg.session.CopyFrom(event.session)
    return msg

"""Conversions between the agents' Session messages and the console's SessionRow."""

from __future__ import annotations

from datetime import UTC, datetime

from convocate.v1 import sessions_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from shell.fleet.model import SessionRow

__all__ = ["session_row"]


def _when(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def session_row(s: sessions_pb2.Session, agent_id: str) -> SessionRow:
    """The table row for session ``s`` of agent ``agent_id``.

    Args:
        s: the session as the agent sent it.
        agent_id: the agent that answered (used when ``s.agent_id`` is empty).

    Returns:
        The row (times in UTC, protocol defaulting to tcp).
    """
    return SessionRow(
        id=s.id, name=s.name, agent_id=s.agent_id or agent_id,
        created_at=_when(s.created_at, s.HasField("created_at")),
        last_accessed=_when(s.last_accessed, s.HasField("last_accessed")),
        port=s.port, protocol=s.protocol or "tcp", dns_name=s.dns_name, running=s.running,
        attached=s.attached, viewer_count=s.viewer_count,
    )

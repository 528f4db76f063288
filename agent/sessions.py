"""Sessions: the record, and the rules every operation enforces (pure, no I/O).

Rules and messages follow the v2.0.0 reference (inventory §2.3-2.4), except that the
agent validates names on create and clone too (v2.0.0 did so only on edit).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from common.domain import Activity, Session
from common.errors import AlreadyExistsError, InvalidArgumentError, ResourceExhaustedError
from common.session_rules import PORT_AUTO, is_session_id, validate_dns_name, validate_name, validate_protocol

__all__ = [
    "AGENT_LABEL",
    "AUTO_PORT_MIN",
    "PORT_AUTO",
    "SESSION_LABEL",
    "SessionRecord",
    "SessionView",
    "check_dns_unique",
    "container_hostname",
    "container_name",
    "is_session_id",
    "new_session_id",
    "resolve_port",
    "validate_dns_name",
    "validate_name",
    "validate_protocol",
]

SESSION_LABEL = "convocate.session"
AGENT_LABEL = "convocate.agent"
AUTO_PORT_MIN = 1001


@dataclass(frozen=True)
class SessionRecord:
    """What ``session.json`` holds (live state is not part of the record)."""

    id: str
    name: str
    created_at: datetime
    last_accessed: datetime
    port: int = 0
    protocol: str = "tcp"
    dns_name: str = ""
    # Whether the session should run: set by a start, cleared only by an operator's stop. At its
    # start the agent brings back sessions that should run but whose container is gone.
    desired_running: bool = False

    def touched(self, now: datetime | None = None) -> SessionRecord:
        """A copy with ``last_accessed`` set to now."""
        return replace(self, last_accessed=now or datetime.now(UTC))


@dataclass(frozen=True)
class SessionView:
    """A record plus the live state the agent stamps on List/Get and events."""

    record: SessionRecord
    running: bool = False
    viewer_count: int = 0
    image: str = ""
    unknown: bool = False                 # the engine does not answer: ``running`` is the last known
    known_at: datetime | None = None      # when the running state was last read from the engine
    activity: Activity = field(default_factory=Activity)   # what the CLI inside does (agent.activity)

    @property
    def attached(self) -> bool:
        """At least one viewer is attached."""
        return self.viewer_count > 0

    def session(self, agent_id: str) -> Session:
        """The domain session the agent publishes and serves (image only while running)."""
        r = self.record
        return Session(
            id=r.id, name=r.name, created_at=r.created_at, last_accessed=r.last_accessed,
            port=r.port, protocol=r.protocol, dns_name=r.dns_name, agent_id=agent_id,
            running=self.running, attached=self.attached, viewer_count=self.viewer_count,
            image=self.image if self.running else "",
            state_unknown=self.unknown, state_known_at=self.known_at, activity=self.activity,
        )


def new_session_id() -> str:
    """A random UUIDv4 string."""
    return str(uuid.uuid4())




def container_name(session_id: str) -> str:
    """``convocate-session-<uuid>``."""
    return f"convocate-session-{session_id}"


def container_hostname(session_id: str) -> str:
    """``convocate-<first 8 chars of the uuid>``."""
    return f"convocate-{session_id[:8]}"


def resolve_port(requested: int, protocol: str, others: Iterable[SessionRecord]) -> int:
    """Turn a requested port into the one to store, checking it against ``others``.

    ``0`` is no port; ``-1`` picks the lowest port at or above 1001 that no other
    session uses (any protocol); ``1..65535`` must not clash with another session's
    port of the same protocol.

    Raises:
        InvalidArgumentError: the value is out of range.
        AlreadyExistsError: the explicit port/protocol is taken.
        ResourceExhaustedError: no automatic port is left.
    """
    if requested == 0:
        return 0
    taken = [(o.port, o.protocol) for o in others if o.port]
    if requested == PORT_AUTO:
        used = {port for port, _ in taken}
        for port in range(AUTO_PORT_MIN, 65536):
            if port not in used:
                return port
        raise ResourceExhaustedError("no available port at or above 1001")
    if not 1 <= requested <= 65535:
        raise InvalidArgumentError(f"invalid port: {requested}")
    if (requested, protocol) in taken:
        raise AlreadyExistsError(f"port {requested}/{protocol} is already assigned to another session")
    return requested


def check_dns_unique(dns_name: str, others: Iterable[SessionRecord]) -> None:
    """Raise if another session on this agent has ``dns_name`` (case-insensitive).

    Raises:
        AlreadyExistsError: the name is taken.
    """
    if dns_name and any(o.dns_name.lower() == dns_name for o in others):
        raise AlreadyExistsError(f'DNS name "{dns_name}" is already assigned to another session')

"""Sessions: the record, and the rules every operation enforces (pure, no I/O).

Rules and messages follow the v2.0.0 reference (inventory §2.3-2.4), except that the
agent validates names on create and clone too (v2.0.0 did so only on edit).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from common.errors import AlreadyExistsError, InvalidArgumentError, ResourceExhaustedError

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
PORT_AUTO = -1
AUTO_PORT_MIN = 1001
MAX_NAME_BYTES = 64
_NAME_OK = re.compile(r"[A-Za-z0-9 _.\-]")
_LABEL_OK = re.compile(r"[a-z0-9-]")


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

    @property
    def attached(self) -> bool:
        """At least one viewer is attached."""
        return self.viewer_count > 0


def new_session_id() -> str:
    """A random UUIDv4 string."""
    return str(uuid.uuid4())


def is_session_id(text: str) -> bool:
    """True if ``text`` is a canonical UUID string (directory names that are sessions)."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def container_name(session_id: str) -> str:
    """``convocate-session-<uuid>``."""
    return f"convocate-session-{session_id}"


def container_hostname(session_id: str) -> str:
    """``convocate-<first 8 chars of the uuid>``."""
    return f"convocate-{session_id[:8]}"


def validate_name(name: str) -> str:
    """Return the trimmed name, or raise with the v2.0.0 message.

    Raises:
        InvalidArgumentError: empty, longer than 64 bytes, or a character outside
            letters, digits, space, ``_``, ``-``, ``.``.
    """
    trimmed = name.strip()
    if not trimmed:
        raise InvalidArgumentError("session name cannot be empty")
    if len(trimmed.encode()) > MAX_NAME_BYTES:
        raise InvalidArgumentError("session name cannot exceed 64 characters")
    for ch in trimmed:
        if not _NAME_OK.fullmatch(ch):
            raise InvalidArgumentError(
                f"session name contains invalid character: '{ch}' "
                "(only letters, digits, spaces, _, -, . allowed)"
            )
    return trimmed


def validate_dns_name(dns_name: str) -> str:
    """Return the trimmed, lowercased DNS name ("" allowed), or raise the v2.0.0 message.

    Raises:
        InvalidArgumentError: too long, a bad label length, a label starting or ending
            with ``-``, or a character outside ``a-z 0-9 -``.
    """
    name = dns_name.strip().lower()
    if not name:
        return ""
    if len(name) > 253:
        raise InvalidArgumentError("DNS name too long (max 253 chars)")
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            raise InvalidArgumentError("DNS label length must be 1-63 chars")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidArgumentError("DNS label cannot start or end with '-'")
        for ch in label:
            if not _LABEL_OK.fullmatch(ch):
                raise InvalidArgumentError(f"DNS name contains invalid character '{ch}'")
    return name


def validate_protocol(protocol: str) -> str:
    """Return ``tcp`` or ``udp`` ("" means tcp), or raise the v2.0.0 message."""
    p = protocol.strip().lower()
    if p in ("", "tcp"):
        return "tcp"
    if p == "udp":
        return "udp"
    raise InvalidArgumentError(f'protocol must be "tcp" or "udp", got "{protocol.strip()}"')


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

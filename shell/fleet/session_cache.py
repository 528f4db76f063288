"""One agent's sessions as the shell last saw them, kept current by its watch stream."""

from __future__ import annotations

from datetime import UTC, datetime

from common.domain import Session, SessionEvent, SessionEventKind
from shell.fleet.model import SessionRow

__all__ = ["AgentSessions"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AgentSessions:
    """The cached sessions of one agent (``known`` once a list or snapshot arrived)."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.known = False
        self._rows: dict[str, SessionRow] = {}
        self._snapshot: list[Session] = []

    def replace(self, sessions: list[Session]) -> bool:
        """Replace everything with a full list; return True if anything changed."""
        rows = {s.id: SessionRow.of(s, self.agent_id) for s in sessions}
        changed = rows != self._rows or not self.known
        self._rows, self.known = rows, True
        return changed

    def put(self, session: Session) -> SessionRow:
        """Add or replace one session; return its row."""
        row = SessionRow.of(session, self.agent_id)
        self._rows[row.id] = row
        return row

    def remove(self, session_id: str) -> bool:
        """Forget one session; return True if it was there."""
        return self._rows.pop(session_id, None) is not None

    def apply(self, event: SessionEvent) -> bool:
        """Apply one WatchSessions event; return True if the rows changed."""
        kind, session = event.kind, event.session
        if kind is SessionEventKind.EXISTING:
            if session is not None:
                self._snapshot.append(session)
            return False
        if kind is SessionEventKind.SYNCED:
            snapshot, self._snapshot = self._snapshot, []
            return self.replace(snapshot)
        if kind is SessionEventKind.DELETED:
            return self.remove(event.session_id or (session.id if session is not None else ""))
        if session is not None and session.id:
            before = self._rows.get(session.id)
            return self.put(session) != before
        return False

    def start_snapshot(self) -> None:
        """A new watch stream starts: drop any half-received snapshot."""
        self._snapshot = []

    def get(self, session_id: str) -> SessionRow | None:
        """The cached row of one session."""
        return self._rows.get(session_id)

    def rows(self) -> list[SessionRow]:
        """The rows, most recently accessed first."""
        return sorted(self._rows.values(), key=lambda r: (r.last_accessed or _EPOCH, r.id), reverse=True)

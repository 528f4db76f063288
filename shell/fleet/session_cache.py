"""One agent's sessions as the shell last saw them, kept current by its watch stream."""

from __future__ import annotations

from datetime import UTC, datetime

from convocate.v1 import sessions_pb2

from shell.fleet.model import SessionRow
from shell.fleet.sessions_proto import session_row

__all__ = ["AgentSessions"]

_K = sessions_pb2.SessionEventKind
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AgentSessions:
    """The cached sessions of one agent (``known`` once a list or snapshot arrived)."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.known = False
        self._rows: dict[str, SessionRow] = {}
        self._snapshot: list[sessions_pb2.Session] = []

    def replace(self, sessions: list[sessions_pb2.Session]) -> bool:
        """Replace everything with a full list; return True if anything changed."""
        rows = {s.id: session_row(s, self.agent_id) for s in sessions}
        changed = rows != self._rows or not self.known
        self._rows, self.known = rows, True
        return changed

    def put(self, session: sessions_pb2.Session) -> SessionRow:
        """Add or replace one session; return its row."""
        row = session_row(session, self.agent_id)
        self._rows[row.id] = row
        return row

    def remove(self, session_id: str) -> bool:
        """Forget one session; return True if it was there."""
        return self._rows.pop(session_id, None) is not None

    def apply(self, event: sessions_pb2.SessionEvent) -> bool:
        """Apply one WatchSessions event; return True if the rows changed."""
        kind = event.kind
        if kind == _K.SESSION_EVENT_KIND_EXISTING:
            self._snapshot.append(event.session)
            return False
        if kind == _K.SESSION_EVENT_KIND_SYNCED:
            snapshot, self._snapshot = self._snapshot, []
            return self.replace(snapshot)
        if kind == _K.SESSION_EVENT_KIND_DELETED:
            return self.remove(event.session_id or event.session.id)
        if event.HasField("session") and event.session.id:
            before = self._rows.get(event.session.id)
            return self.put(event.session) != before
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

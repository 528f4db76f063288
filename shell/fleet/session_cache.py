"""One agent's sessions as the shell last saw them, kept current by its watch stream.

What an agent says about its sessions is untrusted (security review, finding 8): every
session is this agent's, whatever its ``agent_id`` field claims; an id that is not a
canonical UUID, or that another agent already holds, is dropped with a logged error
(so a compromised agent cannot take over another agent's sessions and receive the
keystrokes meant for them); and one agent holds at most :data:`MAX_SESSIONS` sessions.

A refresh lists every agent again, and mostly hears what the cache already holds: the
cache keeps the fingerprint of the listing its rows were built from
(:class:`common.client.calls.Listing`, :attr:`AgentSessions.listed`), forgotten at any
other change, so an identical answer is recognised without converting a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from common.domain import Session, SessionEvent, SessionEventKind
from common.errors import FailedPreconditionError
from common.logging import get_logger
from common.session_rules import is_session_id
from common.text import safe_display
from shell.fleet.model import SessionRow

__all__ = ["MAX_SESSIONS", "AgentSessions"]

MAX_SESSIONS = 10_000  # sessions one agent may list (a snapshot beyond it is cut)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = get_logger(__name__)


class AgentSessions:
    """The cached sessions of one agent (``known`` once a list or snapshot arrived).

    Args:
        agent_id: the agent that answers for these sessions.
        owner_of: which other agent already holds a session id (None: none); such ids
            are refused here.
    """

    def __init__(self, agent_id: str, owner_of: Callable[[str, str], str | None] | None = None) -> None:
        self.agent_id = agent_id
        self.known = False
        self._owner_of = owner_of
        self._rows: dict[str, SessionRow] = {}
        self._sorted: list[SessionRow] | None = None   # rows(), until the next change
        self.listed: bytes | None = None    # the fingerprint of the listing the rows are (None: not one)
        self._snapshot: list[Session] = []
        self._reported: set[str] = set()  # refusals already logged (bounded)
        self.refused = 0

    def _refuse(self, session_id: str, why: str) -> None:
        self.refused += 1
        key = f"{session_id[:80]}:{why}"
        if key in self._reported:
            return
        if len(self._reported) >= 256:
            self._reported.clear()
        self._reported.add(key)
        log.error("session from agent refused", agent=self.agent_id, session=safe_display(session_id, 80),
                  reason=why, refused=self.refused)

    def _changed(self) -> None:
        self._sorted = None
        self.listed = None

    def _row(self, session: Session) -> SessionRow | None:
        """The row for ``session`` as this agent's, or None (refused and logged).

        An id this agent already holds was checked against the others when it came: no
        other agent can have taken it since (it would have been refused).
        """
        if session.id not in self._rows:
            if not is_session_id(session.id):
                self._refuse(session.id, "session id is not a canonical UUID")
                return None
            owner = self._owner_of(session.id, self.agent_id) if self._owner_of is not None else None
            if owner is not None:
                self._refuse(session.id, f"session id already belongs to agent {owner}")
                return None
        if session.agent_id and session.agent_id != self.agent_id:
            self._refuse(session.id, f"it claims agent {safe_display(session.agent_id, 80)}; kept as "
                                     f"{self.agent_id}'s")
            return replace(SessionRow.of(session, self.agent_id), agent_id=self.agent_id)
        return SessionRow.of(session, self.agent_id)

    def replace(self, sessions: list[Session], listed: bytes | None = None) -> bool:
        """Replace everything with a full list; return True if anything changed.

        ``listed``: the fingerprint of the listing ``sessions`` came from, kept as
        :attr:`listed` when every session was taken (a refusal may not hold next time).
        """
        refused = self.refused
        if len(sessions) > MAX_SESSIONS:
            self._refuse(f"{len(sessions)} sessions", f"more than {MAX_SESSIONS}: the rest are ignored")
            sessions = sessions[:MAX_SESSIONS]
        rows: dict[str, SessionRow] = {}
        for s in sessions:
            row = self._row(s)
            if row is not None and row.id not in rows:
                rows[row.id] = row
        changed = rows != self._rows or not self.known
        if changed:
            self._changed()
        self._rows, self.known = rows, True
        self.listed = listed if self.refused == refused else None
        return changed

    def put(self, session: Session) -> SessionRow:
        """Add or replace one session; return its row.

        Raises:
            FailedPreconditionError: the agent's answer was refused (see the module docstring).
        """
        row = self._row(session)
        if row is None:
            raise FailedPreconditionError(
                f"agent {self.agent_id} answered with a session the shell refuses "
                f"({safe_display(session.id, 80)}); see the log")
        if row.id not in self._rows and len(self._rows) >= MAX_SESSIONS:
            self._refuse(row.id, f"the agent already has {MAX_SESSIONS} sessions")
            raise FailedPreconditionError(f"agent {self.agent_id} has more than {MAX_SESSIONS} sessions")
        if self._rows.get(row.id) != row:
            self._rows[row.id] = row
            self._changed()
        return row

    def remove(self, session_id: str) -> bool:
        """Forget one session; return True if it was there."""
        if self._rows.pop(session_id, None) is None:
            return False
        self._changed()
        return True

    def apply(self, event: SessionEvent) -> bool:
        """Apply one WatchSessions event; return True if the rows changed."""
        kind, session = event.kind, event.session
        if kind is SessionEventKind.EXISTING:
            if session is not None and len(self._snapshot) <= MAX_SESSIONS:  # replace() cuts and logs
                self._snapshot.append(session)
            return False
        if kind is SessionEventKind.SYNCED:
            snapshot, self._snapshot = self._snapshot, []
            return self.replace(snapshot)
        if kind is SessionEventKind.DELETED:
            return self.remove(event.session_id or (session.id if session is not None else ""))
        if session is not None and session.id:
            before = self._rows.get(session.id)
            try:
                return self.put(session) != before
            except FailedPreconditionError:
                return False
        return False

    def start_snapshot(self) -> None:
        """A new watch stream starts: drop any half-received snapshot."""
        self._snapshot = []

    def holds(self, session_id: str) -> bool:
        """True if this agent's cache holds ``session_id``."""
        return session_id in self._rows

    def get(self, session_id: str) -> SessionRow | None:
        """The cached row of one session."""
        return self._rows.get(session_id)

    def rows(self) -> list[SessionRow]:
        """The rows, most recently accessed first."""
        if self._sorted is None:
            self._sorted = sorted(self._rows.values(), key=lambda r: (r.last_accessed or _EPOCH, r.id),
                                  reverse=True)
        return list(self._sorted)

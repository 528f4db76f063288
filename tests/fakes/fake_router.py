"""An in-memory RouterAPI for console tests: agents, sessions, and recorded calls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from common.client.attach_call import AttachCall
from common.domain import Screen
from common.errors import FailedPreconditionError, NotFoundError, UnavailableError
from shell.fleet.model import AgentRow, SessionRow

__all__ = ["FakeRouter", "make_row"]


def make_row(name: str, agent_id: str = "agent-a", *, running: bool = False, attached: bool = False,
             port: int = 0, viewers: int = 0) -> SessionRow:
    """A session row with a fresh id and fixed timestamps."""
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    return SessionRow(id=str(uuid.uuid4()), name=name, agent_id=agent_id, created_at=when,
                      last_accessed=when, port=port, running=running, attached=attached,
                      viewer_count=viewers)


class FakeRouter:
    """Implements :class:`shell.fleet.model.RouterAPI` in memory; ``gate`` can hold operations."""

    def __init__(self, agents: list[AgentRow] | None = None, rows: list[SessionRow] | None = None) -> None:
        self._agents = list(agents or [])
        self._rows = list(rows or [])
        self._listeners: list[Callable[[], None]] = []
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.fail: dict[str, Exception] = {}
        self.gate: asyncio.Event | None = None
        self.screens: dict[str, str] = {}      # session id -> what peek returns
        self.replies: list[tuple[str, str]] = []

    # -- cached views --------------------------------------------------------------
    def agents(self) -> list[AgentRow]:
        """The agents."""
        return list(self._agents)

    def rows(self) -> list[SessionRow]:
        """The sessions."""
        return list(self._rows)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Register a change listener."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def set_rows(self, rows: list[SessionRow]) -> None:
        """Replace the sessions and notify (a watch event)."""
        self._rows = list(rows)
        self._notify()

    def set_agents(self, agents: list[AgentRow]) -> None:
        """Replace the agents and notify (a heartbeat change)."""
        self._agents = list(agents)
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    async def _enter(self, op: str, *args: object) -> None:
        self.calls.append((op, args))
        if self.gate is not None:
            await self.gate.wait()
        if op in self.fail:
            raise self.fail[op]

    def _find(self, session_id: str) -> SessionRow:
        for r in self._rows:
            if r.id == session_id:
                return r
        raise NotFoundError(f'session "{session_id}" does not exist')

    def _put(self, row: SessionRow) -> SessionRow:
        self._rows = [row if r.id == row.id else r for r in self._rows]
        self._notify()
        return row

    # -- operations ----------------------------------------------------------------
    async def create(self, agent_id: str, name: str, port: int, protocol: str, dns_name: str,
                     *, start: bool = False) -> SessionRow:
        """Add a session."""
        await self._enter("create", agent_id, name, port, protocol, dns_name, start)
        row = replace(make_row(name, agent_id, running=start), port=max(port, 0), protocol=protocol,
                      dns_name=dns_name)
        self._rows.append(row)
        self._notify()
        return row

    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> SessionRow:
        """Change a session."""
        await self._enter("update", session_id, name, port, protocol, dns_name)
        return self._put(replace(self._find(session_id), name=name, port=port, protocol=protocol,
                                 dns_name=dns_name))

    async def clone(self, session_id: str, name: str) -> SessionRow:
        """Copy a session."""
        await self._enter("clone", session_id, name)
        src = self._find(session_id)
        row = make_row(name, src.agent_id)
        self._rows.append(row)
        self._notify()
        return row

    async def delete(self, session_id: str) -> None:
        """Remove a session."""
        await self._enter("delete", session_id)
        self._find(session_id)
        self._rows = [r for r in self._rows if r.id != session_id]
        self._notify()

    async def kill(self, session_id: str) -> None:
        """Stop a session."""
        await self._enter("kill", session_id)
        self._put(replace(self._find(session_id), running=False, attached=False))

    async def background(self, session_id: str) -> None:
        """Detach every viewer."""
        await self._enter("background", session_id)
        self._put(replace(self._find(session_id), attached=False, viewer_count=0))

    async def restart(self, session_id: str) -> SessionRow:
        """Start a session."""
        await self._enter("restart", session_id)
        row = self._find(session_id)
        if row.running:
            raise FailedPreconditionError(f'session "{row.name}" already running')
        return self._put(replace(row, running=True))

    async def peek(self, session_id: str) -> Screen:
        """The screen set in ``screens`` (a reply shows on it as a new line)."""
        await self._enter("peek", session_id)
        self._find(session_id)
        return Screen(self.screens.get(session_id, ""), rows=24, cols=80)

    async def reply(self, session_id: str, text: str) -> None:
        """Record the reply and append it to the session's screen."""
        await self._enter("reply", session_id, text)
        self._find(session_id)
        self.replies.append((session_id, text))
        self.screens[session_id] = f"{self.screens.get(session_id, '')}\n{text}".lstrip("\n")

    def attach_call(self, session_id: str) -> AttachCall:
        """No agents here: the console tests use a fake attacher."""
        self._find(session_id)
        raise UnavailableError("the fake router has no agents to attach to")

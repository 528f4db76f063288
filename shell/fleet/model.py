"""What the console shows, and the router interface it reads it through.

The console never makes a network call in the UI path: it reads :meth:`RouterAPI.rows`
and :meth:`RouterAPI.agents` (cached, synchronous) and runs operations as background
tasks. The router calls the listeners given to :meth:`RouterAPI.subscribe` whenever
its cache changes (watch streams, heartbeats, completed operations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.client.attach_call import AttachHandle
from common.domain import ActivityState, HostHealth, Screen, Session, session_status

__all__ = ["AgentRow", "RouterAPI", "SessionRow"]


@dataclass(frozen=True)
class AgentRow:
    """One registered agent as the shell sees it."""

    agent_id: str
    address: str                 # host (IP or name) of its SSH server
    reachable: bool              # the shell -> agent tunnel is up and Ping answers
    last_error: str = ""         # why it is not reachable
    status_connected: bool = False   # its status stream (agent -> shell) is open
    notices: tuple[str, ...] = ()    # cross-channel notices from the shared view
    version: str = ""
    health: HostHealth | None = None  # its engine and host (Ping, else the shared view)

    @property
    def problems(self) -> list[str]:
        """Its engine or disk problems, one short line each (empty when fine or not known)."""
        return self.health.problems() if self.health is not None and self.reachable else []


@dataclass(frozen=True)
class SessionRow:
    """One row of the session table."""

    id: str
    name: str
    agent_id: str                # "" for a local orphan
    created_at: datetime | None
    last_accessed: datetime | None
    port: int = 0
    protocol: str = "tcp"
    dns_name: str = ""
    running: bool = False
    attached: bool = False
    viewer_count: int = 0
    orphan: bool = False         # pre-v2 local session on the shell host
    placeholder: bool = False    # "agent unreachable" marker row (id is "")
    error: str = ""              # for placeholders: why the agent is unreachable
    unknown: bool = False        # the state is not a fact now (engine or agent unreachable)
    known_at: datetime | None = None  # when the state was last known (for unknown rows)
    activity: str = ""           # an :class:`ActivityState` value ("": not known, e.g. an orphan)
    activity_reason: str = ""    # for needs_input: permission, question, idle prompt
    activity_since: datetime | None = None   # when the activity began
    activity_message: str = ""   # the CLI's notification text, if any

    @property
    def needs_input(self) -> bool:
        """The session waits for the operator (a running, reachable session only)."""
        return self.activity == ActivityState.NEEDS_INPUT and not self.placeholder

    @classmethod
    def of(cls, s: Session, agent_id: str = "") -> SessionRow:
        """The row of session ``s`` (``agent_id`` fills an empty ``s.agent_id``).

        ``known_at`` is kept for a state that is unknown only: for a known state it is the
        moment the agent answered, which changes at every list and says nothing.
        """
        return cls(
            id=s.id, name=s.name, agent_id=s.agent_id or agent_id, created_at=s.created_at,
            last_accessed=s.last_accessed, port=s.port, protocol=s.protocol or "tcp",
            dns_name=s.dns_name, running=s.running, attached=s.attached, viewer_count=s.viewer_count,
            unknown=s.state_unknown, known_at=s.state_known_at if s.state_unknown else None,
            activity=s.activity.state.value, activity_reason=s.activity.reason.value,
            activity_since=s.activity.since, activity_message=s.activity.message,
        )

    @property
    def status_letter(self) -> str:
        """O orphan, ? unknown, C attached, R running, L attached-but-stopped, - otherwise."""
        return session_status(running=self.running, attached=self.attached, orphan=self.orphan,
                              unknown=self.unknown).value



class RouterAPI(Protocol):
    """The console's view of the fleet (implemented by ``shell.fleet.router.Router``)."""

    def agents(self) -> list[AgentRow]: ...
    def rows(self) -> list[SessionRow]: ...
    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` on every change; returns an unsubscribe function."""
        ...

    async def create(self, agent_id: str, name: str, port: int, protocol: str,
                     dns_name: str, *, start: bool = False) -> SessionRow: ...
    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> SessionRow: ...
    async def clone(self, session_id: str, name: str) -> SessionRow: ...
    async def delete(self, session_id: str) -> None: ...
    async def kill(self, session_id: str) -> None: ...
    async def background(self, session_id: str) -> None: ...
    async def restart(self, session_id: str) -> SessionRow: ...
    def attach_call(self, session_id: str) -> AttachHandle:
        """A new Attach stream to the session's agent (raises UnavailableError/NotFound)."""
        ...

    async def peek(self, session_id: str) -> Screen:
        """The session's last screen, read-only (never resizes it or disturbs a viewer)."""
        ...

    async def reply(self, session_id: str, text: str) -> None:
        """Send ``text`` to the session as keystrokes (one line, Enter included)."""
        ...

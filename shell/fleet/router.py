"""The router: every agent's sessions in one cached view, and operations routed by id.

:class:`Router` implements :class:`shell.fleet.model.RouterAPI` for the console. Its
:class:`shell.fleet.agent_fleet.AgentFleet` holds one client per registered agent and keeps
each agent's sessions current from its WatchSessions stream (no polling); the router
lists all agents concurrently with a per-agent deadline when asked
(:meth:`Router.refresh`) and routes each operation to the agent that owns the session.
Pre-v2 sessions found on the shell host are orphans (:mod:`shell.fleet.orphans`). The
shared health view from the local status service (:mod:`shell.fleet.status_client`) fills
``AgentRow.status_connected`` and ``notices``; every cache change rewrites the dnsmasq
hosts file (:mod:`shell.fleet.dns`), in a worker thread; an operation that changes a
record (create, update, clone, delete, refresh) answers once it is written.

Rows of an agent that becomes unreachable stay in the table, their state *unknown* and
dated from the last time the agent answered, next to one placeholder row; an agent
never reached shows only the placeholder. Each agent's engine and host health is the
more recent of its Ping's and the shared view's (which hears of a change at once).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from common.client.agent_client import AgentClient, ClientSettings
from common.client.attach_call import AttachHandle
from common.domain import HostHealth, Screen, Session
from common.errors import ConvocateError, InvalidArgumentError, NotFoundError
from common.logging import get_logger
from common.paths import private_dir
from common.session_rules import DEFAULT_DNS_ZONE
from shell.fleet.agent_fleet import AgentFleet
from shell.fleet.dns import DnsHosts, dns_records
from shell.fleet.model import AgentRow, SessionRow
from shell.fleet.orphans import delete_orphan, orphan_refusal, scan_orphans
from shell.fleet.status_client import StatusClient

__all__ = ["Router", "RouterConfig"]

T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True)
class RouterConfig:
    """Where the router finds agents, orphans, the status service and the DNS file."""

    registry_dir: Path
    runtime_dir: Path                       # private dir for the per-agent tunnel sockets
    orphans_root: Path | None = None        # pre-v2 sessions (/home/claude); None = none
    dnsmasq_hosts: Path | None = None       # None = do not write DNS records
    dnsmasq_pidfile: Path | None = None     # SIGHUP dnsmasq after each write
    dns_zone: str = DEFAULT_DNS_ZONE        # session DNS names outside it are never written
    status_socket: Path | None = None       # the local status service; None = no shared view
    heartbeat_interval: float = 30.0
    call_timeout: float = 10.0
    list_timeout: float = 3.0               # per-agent deadline of a fan-out list
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0
    backoff_max: float = 30.0
    registry_poll: float = 10.0             # re-read the registry this often (0: at start/refresh only)
    client_id: str = f"console:{os.getpid()}"


def _fresher(a: HostHealth | None, b: HostHealth | None) -> HostHealth | None:
    """The more recently checked of two reports of one host's health (Ping's or the shared view's)."""
    if a is None or b is None:
        return a or b
    epoch = datetime.min.replace(tzinfo=UTC)
    return b if (b.checked_at or epoch) > (a.checked_at or epoch) else a


class Router:
    """The console's fleet view (see the module docstring). Use ``async with``."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.fleet = AgentFleet(config.registry_dir, ClientSettings(runtime_dir=config.runtime_dir),
                                self._changed, self._client_changed)
        self._orphans: dict[str, SessionRow] = {}
        self._listeners: list[Callable[[], None]] = []
        self.dns = DnsHosts(config.dnsmasq_hosts, config.dnsmasq_pidfile)
        self.status: StatusClient | None = None
        self._closing = False

    @property
    def clients(self) -> dict[str, AgentClient]:
        """The agent clients by agent id."""
        return self.fleet.clients

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the registry, connect to every agent and start watching (never waits on one)."""
        self.fleet.settings = ClientSettings(
            runtime_dir=private_dir(self.config.runtime_dir),
            heartbeat_interval=self.config.heartbeat_interval,
            call_timeout=self.config.call_timeout, connect_timeout=self.config.connect_timeout,
            keepalive_interval=self.config.keepalive_interval, backoff_max=self.config.backoff_max,
            client_id=self.config.client_id,
        )
        if self.config.status_socket is not None:
            self.status = StatusClient(self.config.status_socket, self.config.client_id, self._health_changed,
                                       resend_interval=self.config.heartbeat_interval)
            await self.status.start()
        await self.fleet.reload()
        self._orphans = {r.id: r for r in scan_orphans(self.config.orphans_root)}
        log.info("router started", agents=sorted(self.clients), orphans=len(self._orphans))
        self._changed()
        if self.config.registry_poll > 0:
            self.fleet.poll(self.config.registry_poll)

    async def close(self) -> None:
        """Stop watching and close every connection (withdrawing our link reports)."""
        self._closing = True
        await self.fleet.close()
        await self.dns.flush()
        if self.status is not None:
            await self.status.close()

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- cached views ------------------------------------------------------------------------
    def agents(self) -> list[AgentRow]:
        """Every registered agent, sorted by id, with the shared health view merged in."""
        out = []
        view_down: tuple[str, ...] = ()
        if self.status is not None and not self.status.connected:
            view_down = (f"shared health view unavailable: no status service on {self.status.socket}",)
        for agent_id in sorted(self.clients):
            c = self.clients[agent_id]
            health = self.status.health.get(agent_id) if self.status is not None else None
            out.append(AgentRow(
                agent_id=agent_id, address=c.record.address, reachable=c.reachable,
                last_error="" if c.reachable else c.last_error,
                status_connected=bool(health and health.connected and not health.heartbeat_stale),
                notices=tuple(health.notices) if health is not None else view_down,
                version=c.version or (health.version if health is not None else ""),
                health=_fresher(c.health, self.status.host_health(agent_id) if self.status else None),
            ))
        for name, error in sorted(self.fleet.broken.items()):
            out.append(AgentRow(agent_id=name, address="", reachable=False,
                                last_error=f"invalid registry entry: {error}"))
        return out

    def rows(self) -> list[SessionRow]:
        """Orphans, then each agent's sessions (newest first), placeholders for the unreachable."""
        rows = sorted(self._orphans.values(), key=lambda r: (r.name, r.id))
        for agent_id in sorted(self.clients):
            c = self.clients[agent_id]
            cached = self.fleet.sessions[agent_id].rows()
            if not c.reachable:  # what it last said is no longer a fact
                last_ok = c.control_link().last_ok
                cached = [r if r.unknown else replace(r, unknown=True, known_at=last_ok) for r in cached]
            rows.extend(cached)
            if not c.reachable:
                rows.append(SessionRow(id="", name="", agent_id=agent_id, created_at=None,
                                       last_accessed=None, placeholder=True,
                                       error=c.last_error or "unreachable"))
        for name, error in sorted(self.fleet.broken.items()):
            rows.append(SessionRow(id="", name="", agent_id=name, created_at=None, last_accessed=None,
                                   placeholder=True, error=f"invalid registry entry: {error}"))
        return rows

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` on every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self) -> None:
        self.dns.submit(dns_records(self.rows(), self.fleet.ips, self.config.dns_zone))
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("router listener failed")

    def _client_changed(self, client: AgentClient) -> None:
        if self.status is not None and not self._closing:  # "closed" is not a link failure
            self.status.report(client.agent_id, client.control_link(), client.agent_status_link)
        self._changed()

    def _health_changed(self, agent_id: str) -> None:
        if not agent_id or agent_id in self.clients:
            self._changed()

    async def refresh(self) -> list[SessionRow]:
        """Re-read the registry, list every agent concurrently (per-agent deadline), rescan orphans.

        Listeners hear of it once, whatever the number of agents.

        Returns:
            The rows afterwards; an agent that failed keeps its cached rows.
        """
        await self.fleet.reload()
        await self.fleet.list_all(self.config.list_timeout)
        self._orphans = {r.id: r for r in scan_orphans(self.config.orphans_root)}
        self._changed()
        await self.dns.flush()
        return self.rows()

    # --- routing -----------------------------------------------------------------------------------
    def _route(self, session_id: str, operation: str) -> AgentClient:
        for agent_id, cache in self.fleet.sessions.items():
            if cache.get(session_id) is not None:
                return self.clients[agent_id]
        orphan = self._orphans.get(session_id)
        if orphan is not None:
            raise orphan_refusal(orphan, operation)
        unknown = sorted(a for a, c in self.fleet.sessions.items() if not c.known)
        if unknown:
            raise NotFoundError(f'session "{session_id}" is not known; it may belong to an agent not '
                                f"reached yet ({', '.join(unknown)})")
        raise NotFoundError(f'session "{session_id}" does not exist')

    def _client(self, agent_id: str) -> AgentClient:
        if not agent_id:
            raise InvalidArgumentError("agent-id required: pick a target agent")
        if agent_id in self.fleet.broken:
            error = self.fleet.broken[agent_id]
            raise InvalidArgumentError(f'agent "{agent_id}": invalid registry entry: {error}')
        client = self.clients.get(agent_id)
        if client is None:
            raise NotFoundError(f'agent "{agent_id}" not registered')
        return client

    def _put(self, agent_id: str, session: Session) -> SessionRow:
        row = self.fleet.sessions[agent_id].put(session)
        self._changed()
        return row

    async def _settled(self, row: SessionRow) -> SessionRow:
        """``row`` once the DNS hosts file says what the change made it say: an operation's
        answer means its DNS name is on disk (written in a thread, off the console's loop)."""
        await self.dns.flush()
        return row

    async def _on_agent(self, session_id: str, operation: str,
                        call: Callable[[AgentClient], Awaitable[T]]) -> tuple[AgentClient, T]:
        client = self._route(session_id, operation)
        try:
            return client, await call(client)
        except NotFoundError:
            # The agent no longer has it (deleted elsewhere, missed event): drop the ghost row.
            if self.fleet.sessions[client.agent_id].remove(session_id):
                self._changed()
            raise

    async def create(self, agent_id: str, name: str, port: int, protocol: str,
                     dns_name: str, *, start: bool = False) -> SessionRow:
        """Create a session on ``agent_id`` (``start`` also starts its container).

        Returns:
            The new session's row (already in :meth:`rows`).

        Raises:
            InvalidArgumentError: no agent given, a bad value, or an invalid registry entry.
            NotFoundError: the agent is not registered.
            UnavailableError: the agent is unreachable.
            ConvocateError: any other refusal by the agent, with its message.
        """
        client = self._client(agent_id)
        return await self._settled(self._put(agent_id, await client.create(name, port, protocol, dns_name,
                                                                           start=start)))

    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> SessionRow:
        """Replace a session's name, port, protocol and DNS name (on its agent).

        Returns:
            The updated row.

        Raises:
            FailedPreconditionError: the session is an orphan (with the migration command).
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        client, session = await self._on_agent(
            session_id, "update", lambda c: c.update(session_id, name, port, protocol, dns_name))
        return await self._settled(self._put(client.agent_id, session))

    async def clone(self, session_id: str, name: str) -> SessionRow:
        """Clone a session on its own agent.

        Returns:
            The new session's row.

        Raises:
            FailedPreconditionError: the session is an orphan.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        client, session = await self._on_agent(session_id, "clone", lambda c: c.clone(session_id, name))
        return await self._settled(self._put(client.agent_id, session))

    async def delete(self, session_id: str) -> None:
        """Delete a session; an orphan's local directory is removed here (the one orphan write).

        Deleting a session its agent no longer has succeeds (the row goes away).

        Raises:
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        if session_id in self._orphans and self.config.orphans_root is not None:
            delete_orphan(self.config.orphans_root, session_id)
            del self._orphans[session_id]
            self._changed()
            return
        client = self._route(session_id, "delete")
        with contextlib.suppress(NotFoundError):
            await client.delete(session_id)
        if self.fleet.sessions[client.agent_id].remove(session_id):
            self._changed()
        await self.dns.flush()

    async def _after(self, client: AgentClient, session_id: str) -> None:
        # The watch stream brings the change too; this makes the caller's view current now.
        with contextlib.suppress(ConvocateError):
            self._put(client.agent_id, await client.get(session_id))

    async def kill(self, session_id: str) -> None:
        """Stop a session's container.

        Raises:
            FailedPreconditionError: the session is an orphan.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        client, _ = await self._on_agent(session_id, "kill", lambda c: c.kill(session_id))
        await self._after(client, session_id)

    async def background(self, session_id: str) -> None:
        """Detach every viewer of a session.

        Raises:
            FailedPreconditionError: the session is an orphan.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        client, _ = await self._on_agent(session_id, "background", lambda c: c.background(session_id))
        await self._after(client, session_id)

    async def restart(self, session_id: str) -> SessionRow:
        """Start a stopped session with its agent's current image.

        Returns:
            The session's row, running.

        Raises:
            FailedPreconditionError: the session is an orphan, or already running.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        client, session = await self._on_agent(session_id, "restart", lambda c: c.restart(session_id))
        return self._put(client.agent_id, session)

    def attach_call(self, session_id: str) -> AttachHandle:
        """A new attach stream to the session's agent (opened by its ``start``; see ``AgentClient.attach``).

        Raises:
            UnavailableError: the agent is unreachable.
            NotFoundError: no such session.
            FailedPreconditionError: the session is an orphan.
        """
        return self._route(session_id, "attach to").attach()

    async def peek(self, session_id: str) -> Screen:
        """The session's last screen, read-only (the agent reads its tmux pane; no resize).

        Raises:
            FailedPreconditionError: the session is an orphan or not running.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        _, screen = await self._on_agent(session_id, "peek at", lambda c: c.peek(session_id))
        return screen

    async def reply(self, session_id: str, text: str) -> None:
        """Type ``text`` and Enter into the session (recorded in its event log with our client id).

        Raises:
            InvalidArgumentError: the text is not one printable line.
            FailedPreconditionError: the session is an orphan or not running.
            NotFoundError: no such session.
            UnavailableError: its agent is unreachable.
        """
        await self._on_agent(session_id, "reply to", lambda c: c.reply(session_id, text))

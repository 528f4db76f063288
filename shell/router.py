"""The router: every agent's sessions in one cached view, and operations routed by id.

:class:`Router` implements :class:`shell.model.RouterAPI` for the console. It opens one
:class:`shell.agent_client.AgentClient` per registered agent, keeps each agent's
sessions current from its WatchSessions stream (no polling), lists all agents
concurrently with a per-agent deadline when asked (:meth:`Router.refresh`), and
routes each operation to the agent that owns the session. Pre-v2 sessions found on
the shell host are orphans (:mod:`shell.orphans`). The shared health view from the
local status service (:mod:`shell.status_client`) fills ``AgentRow.status_connected``
and ``notices``; every cache change rewrites the dnsmasq hosts file (:mod:`shell.dns`).

Rows of an agent that becomes unreachable stay in the table (the console marks them
stale) next to one placeholder row; an agent never reached shows only the placeholder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from convocate.v1 import sessions_pb2

from common.errors import ConvocateError, InvalidArgumentError, NotFoundError, UnavailableError
from common.logging import get_logger
from common.paths import private_dir
from common.registry import AgentRecord, scan_registry
from shell.agent_client import AgentClient, ClientSettings
from shell.dns import DnsHosts, dns_records, resolve_address
from shell.model import AgentRow, SessionRow
from shell.orphans import delete_orphan, orphan_refusal, scan_orphans
from shell.session_cache import AgentSessions
from shell.status_client import StatusClient

__all__ = ["Router", "RouterConfig"]

log = get_logger(__name__)


@dataclass(frozen=True)
class RouterConfig:
    """Where the router finds agents, orphans, the status service and the DNS file."""

    registry_dir: Path
    runtime_dir: Path                       # private dir for the per-agent tunnel sockets
    orphans_root: Path | None = None        # pre-v2 sessions (/home/claude); None = none
    dnsmasq_hosts: Path | None = None       # None = do not write DNS records
    dnsmasq_pidfile: Path | None = None     # SIGHUP dnsmasq after each write
    status_socket: Path | None = None       # the local status service; None = no shared view
    heartbeat_interval: float = 30.0
    call_timeout: float = 10.0
    list_timeout: float = 3.0               # per-agent deadline of a fan-out list
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0
    backoff_max: float = 30.0
    registry_poll: float = 10.0             # re-read the registry this often (0: only at start)
    client_id: str = f"console:{os.getpid()}"


class Router:
    """The console's fleet view (see the module docstring). Use ``async with``."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.clients: dict[str, AgentClient] = {}
        self._broken: dict[str, str] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._settings = ClientSettings(runtime_dir=config.runtime_dir)
        self._sessions: dict[str, AgentSessions] = {}
        self._ips: dict[str, str] = {}
        self._orphans: dict[str, SessionRow] = {}
        self._listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.dns = DnsHosts(config.dnsmasq_hosts, config.dnsmasq_pidfile)
        self.status: StatusClient | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the registry, connect to every agent and start watching (never waits on one)."""
        self._settings = ClientSettings(
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
        await self.reload_registry()
        self._orphans = {r.id: r for r in scan_orphans(self.config.orphans_root)}
        log.info("router started", agents=sorted(self.clients), orphans=len(self._orphans))
        self._changed()
        if self.config.registry_poll > 0:
            self._spawn(self._poll_registry(), "registry-poll")

    async def reload_registry(self) -> None:
        """Pick up agents added, removed or changed in the registry since the last read."""
        records, broken = scan_registry(self.config.registry_dir)
        changed = broken != self._broken
        self._broken = broken
        wanted = {r.agent_id: r for r in records}
        for agent_id in [a for a, c in self.clients.items() if wanted.get(a) != c.record]:
            await self._remove_agent(agent_id)
            changed = True
        for agent_id, record in wanted.items():
            if agent_id not in self.clients:
                await self._add_agent(record)
                changed = True
        if changed:
            log.info("agent registry read", agents=sorted(self.clients), invalid=sorted(broken))
            self._changed()

    async def _add_agent(self, record: AgentRecord) -> None:
        client = AgentClient(record, self._settings, self._client_changed)
        self.clients[record.agent_id] = client
        self._sessions[record.agent_id] = AgentSessions(record.agent_id)
        ip = await resolve_address(record.address)
        if ip is not None:
            self._ips[record.agent_id] = ip
        await client.start()
        self._watches[record.agent_id] = self._spawn(self._watch(client), f"watch-{record.agent_id}")

    async def _remove_agent(self, agent_id: str) -> None:
        task = self._watches.pop(agent_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client = self.clients.pop(agent_id)
        self._sessions.pop(agent_id, None)
        self._ips.pop(agent_id, None)
        await client.close()

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self.config.registry_poll)
            try:
                await self.reload_registry()
            except Exception:  # a bad read must not end the polling
                log.exception("agent registry reload failed")

    async def close(self) -> None:
        """Stop watching and close every connection."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(c.close() for c in self.clients.values()))
        if self.status is not None:
            await self.status.close()

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            ))
        for name, error in sorted(self._broken.items()):
            out.append(AgentRow(agent_id=name, address="", reachable=False,
                                last_error=f"invalid registry entry: {error}"))
        return out

    def rows(self) -> list[SessionRow]:
        """Orphans, then each agent's sessions (newest first), placeholders for the unreachable."""
        rows = sorted(self._orphans.values(), key=lambda r: (r.name, r.id))
        for agent_id in sorted(self.clients):
            c = self.clients[agent_id]
            rows.extend(self._sessions[agent_id].rows())
            if not c.reachable:
                rows.append(SessionRow(id="", name="", agent_id=agent_id, created_at=None,
                                       last_accessed=None, placeholder=True,
                                       error=c.last_error or "unreachable"))
        for name, error in sorted(self._broken.items()):
            rows.append(SessionRow(id="", name="", agent_id=name, created_at=None, last_accessed=None,
                                   placeholder=True, error=f"invalid registry entry: {error}"))
        return rows

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` on every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self) -> None:
        self.dns.write(dns_records(self.rows(), self._ips))
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("router listener failed")

    def _client_changed(self, client: AgentClient) -> None:
        if self.status is not None:
            self.status.report(client.agent_id, client.control_link(), client.agent_status_link)
        self._changed()

    def _health_changed(self, agent_id: str) -> None:
        if not agent_id or agent_id in self.clients:
            self._changed()

    # --- keeping the cache current ----------------------------------------------------------------
    async def _watch(self, client: AgentClient) -> None:
        cache = self._sessions[client.agent_id]
        delay = 0.2
        while True:
            try:
                await client.tunnel.wait_up(timeout=max(1.0, self.config.heartbeat_interval))
            except UnavailableError:
                continue
            cache.start_snapshot()
            try:
                async for event in client.watch_sessions():
                    delay = 0.2
                    if cache.apply(event):
                        self._changed()
            except ConvocateError as e:
                log.info("session watch ended", agent=client.agent_id, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(1.0, self.config.heartbeat_interval))

    async def _list_one(self, client: AgentClient) -> None:
        try:
            async with asyncio.timeout(self.config.list_timeout + 0.5):
                sessions = await client.list_sessions(self.config.list_timeout)
        except (ConvocateError, TimeoutError) as e:
            log.info("list failed", agent=client.agent_id, error=str(e))
            return
        if self._sessions[client.agent_id].replace(sessions):
            self._changed()

    async def refresh(self) -> list[SessionRow]:
        """List every agent concurrently (per-agent deadline) and rescan orphans.

        Returns:
            The rows afterwards; an agent that failed keeps its cached rows.
        """
        await self.reload_registry()
        await asyncio.gather(*(self._list_one(c) for c in self.clients.values() if c.tunnel.up))
        self._orphans = {r.id: r for r in scan_orphans(self.config.orphans_root)}
        self._changed()
        return self.rows()

    # --- routing -----------------------------------------------------------------------------------
    def _route(self, session_id: str, operation: str) -> AgentClient:
        for agent_id, cache in self._sessions.items():
            if cache.get(session_id) is not None:
                return self.clients[agent_id]
        orphan = self._orphans.get(session_id)
        if orphan is not None:
            raise orphan_refusal(orphan, operation)
        unknown = sorted(a for a, c in self._sessions.items() if not c.known)
        if unknown:
            raise NotFoundError(f'session "{session_id}" is not known; it may belong to an agent not '
                                f"reached yet ({', '.join(unknown)})")
        raise NotFoundError(f'session "{session_id}" does not exist')

    def _client(self, agent_id: str) -> AgentClient:
        if not agent_id:
            raise InvalidArgumentError("agent-id required: pick a target agent")
        if agent_id in self._broken:
            error = self._broken[agent_id]
            raise InvalidArgumentError(f'agent "{agent_id}": invalid registry entry: {error}')
        client = self.clients.get(agent_id)
        if client is None:
            raise NotFoundError(f'agent "{agent_id}" not registered')
        return client

    def _put(self, agent_id: str, session: sessions_pb2.Session) -> SessionRow:
        row = self._sessions[agent_id].put(session)
        self._changed()
        return row

    async def create(self, agent_id: str, name: str, port: int, protocol: str,
                     dns_name: str, *, start: bool = False) -> SessionRow:
        """Create a session on ``agent_id``."""
        client = self._client(agent_id)
        return self._put(agent_id, await client.create(name, port, protocol, dns_name, start=start))

    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> SessionRow:
        """Replace a session's name, port, protocol and DNS name."""
        client = self._route(session_id, "update")
        return self._put(client.agent_id, await client.update(session_id, name, port, protocol, dns_name))

    async def clone(self, session_id: str, name: str) -> SessionRow:
        """Clone a session on its own agent."""
        client = self._route(session_id, "clone")
        return self._put(client.agent_id, await client.clone(session_id, name))

    async def delete(self, session_id: str) -> None:
        """Delete a session (an orphan's local directory is removed here)."""
        if session_id in self._orphans and self.config.orphans_root is not None:
            delete_orphan(self.config.orphans_root, session_id)
            del self._orphans[session_id]
            self._changed()
            return
        client = self._route(session_id, "delete")
        await client.delete(session_id)
        if self._sessions[client.agent_id].remove(session_id):
            self._changed()

    async def _after(self, client: AgentClient, session_id: str) -> SessionRow | None:
        # The watch stream brings the change too; this makes the caller's view current now.
        with contextlib.suppress(ConvocateError):
            return self._put(client.agent_id, await client.get(session_id))
        return None

    async def kill(self, session_id: str) -> None:
        """Stop a session's container."""
        client = self._route(session_id, "kill")
        await client.kill(session_id)
        await self._after(client, session_id)

    async def background(self, session_id: str) -> None:
        """Detach every viewer of a session."""
        client = self._route(session_id, "background")
        await client.background(session_id)
        await self._after(client, session_id)

    async def restart(self, session_id: str) -> SessionRow:
        """Start a stopped session."""
        client = self._route(session_id, "restart")
        return self._put(client.agent_id, await client.restart(session_id))

    def attach_channel(self, session_id: str) -> grpc.aio.Channel:
        """The gRPC channel to the session's agent.

        Raises:
            UnavailableError: the agent is unreachable.
            NotFoundError: no such session.
            FailedPreconditionError: the session is an orphan.
        """
        return self._route(session_id, "attach to").channel

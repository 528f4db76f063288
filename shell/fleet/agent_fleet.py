"""The registered agents: one client and one session cache each, kept current.

:class:`AgentFleet` reads the registry (and re-reads it, so agents added or removed
later join or leave without a restart), opens one :class:`common.client.agent_client.AgentClient`
per agent, follows each agent's WatchSessions stream into its
:class:`shell.fleet.session_cache.AgentSessions` (live, no polling), and lists every agent
concurrently with a per-agent deadline on demand. It owns its tasks and closes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from common.client.agent_client import AgentClient, ClientSettings
from common.errors import ConvocateError, UnavailableError
from common.logging import get_logger
from common.registry import AgentRecord, RegistryScanner
from common.tasks import TaskSet, cancel_and_wait
from shell.fleet.dns import resolve_address
from shell.fleet.session_cache import AgentSessions

__all__ = ["AgentFleet"]

log = get_logger(__name__)


class AgentFleet:
    """Clients and session caches for every registered agent.

    Args:
        registry_dir: the agent registry (:mod:`common.registry`).
        settings: how every client talks to its agent.
        on_change: called whenever a session cache or the set of agents changes.
        on_client_change: called with a client whose link health changed.
    """

    def __init__(self, registry_dir: Path, settings: ClientSettings, on_change: Callable[[], None],
                 on_client_change: Callable[[AgentClient], None]) -> None:
        self.registry_dir = registry_dir
        self._registry = RegistryScanner(registry_dir)
        self.settings = settings
        self._on_change = on_change
        self._on_client_change = on_client_change
        self.clients: dict[str, AgentClient] = {}
        self.sessions: dict[str, AgentSessions] = {}
        self.ips: dict[str, str] = {}
        self.broken: dict[str, str] = {}    # registry directory -> why its entry is invalid
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._tasks = TaskSet("agent-fleet")
        self._reloading = asyncio.Lock()  # the poller and refresh() may both reload

    def owner_of(self, session_id: str, asking: str) -> str | None:
        """The agent other than ``asking`` whose cache holds ``session_id`` (None: no other)."""
        for agent_id, cache in self.sessions.items():
            if agent_id != asking and cache.holds(session_id):
                return agent_id
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self._tasks.create_task(coro, name=name)

    # --- membership ---------------------------------------------------------------------------
    async def reload(self) -> None:
        """Pick up agents added, removed or changed in the registry since the last read."""
        async with self._reloading:
            await self._reload()

    async def _reload(self) -> None:
        records, broken = self._registry.scan()
        changed = broken != self.broken
        self.broken = broken
        wanted = {r.agent_id: r for r in records}
        for agent_id in [a for a, c in self.clients.items() if wanted.get(a) != c.record]:
            await self._remove(agent_id)
            changed = True
        for agent_id, record in wanted.items():
            if agent_id not in self.clients:
                await self._add(record)
                changed = True
            elif agent_id not in self.ips:  # a name that did not resolve before: try again
                ip = await resolve_address(record.address)
                if ip is not None:
                    self.ips[agent_id] = ip
                    changed = True
        if changed:
            log.info("agent registry read", agents=sorted(self.clients), invalid=sorted(broken))
            self._on_change()

    async def _add(self, record: AgentRecord) -> None:
        client = AgentClient(record, self.settings, self._on_client_change)
        self.clients[record.agent_id] = client
        self.sessions[record.agent_id] = AgentSessions(record.agent_id, self.owner_of)
        ip = await resolve_address(record.address)
        if ip is not None:
            self.ips[record.agent_id] = ip
        await client.start()
        self._watches[record.agent_id] = self._spawn(self._watch(client), f"watch-{record.agent_id}")

    async def _remove(self, agent_id: str) -> None:
        task = self._watches.pop(agent_id, None)
        if task is not None:
            await cancel_and_wait([task])
        client = self.clients.pop(agent_id)
        self.sessions.pop(agent_id, None)
        self.ips.pop(agent_id, None)
        await client.close()

    def poll(self, every: float) -> None:
        """Re-read the registry every ``every`` seconds in the background."""
        self._spawn(self._poll(every), "registry-poll")

    async def _poll(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reload()
            except Exception:  # a bad read must not end the polling
                log.exception("agent registry reload failed")

    async def close(self) -> None:
        """Stop every task and close every client."""
        await self._tasks.aclose()
        await asyncio.gather(*(c.close() for c in self.clients.values()))

    # --- keeping the caches current -------------------------------------------------------------
    async def _watch(self, client: AgentClient) -> None:
        cache = self.sessions[client.agent_id]
        slowest = max(1.0, self.settings.heartbeat_interval)
        delay = 0.2
        while True:
            try:
                await client.tunnel.wait_up(timeout=slowest)
            except UnavailableError:
                continue
            cache.start_snapshot()
            try:
                async for event in client.watch_sessions():
                    delay = 0.2
                    if cache.apply(event):
                        self._on_change()
            except ConvocateError as e:
                log.info("session watch ended", agent=client.agent_id, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, slowest)

    async def _list_one(self, client: AgentClient, timeout: float) -> bool:
        """List one agent into its cache; True if its rows changed."""
        try:
            async with asyncio.timeout(timeout + 0.5):
                listing = await client.listing(timeout)
        except (ConvocateError, TimeoutError) as e:
            log.info("list failed", agent=client.agent_id, error=str(e))
            return False
        cache = self.sessions.get(client.agent_id)
        if cache is None or listing.fingerprint == cache.listed:  # removed meanwhile, or nothing new
            return False
        return cache.replace(listing.sessions(), listing.fingerprint)

    async def list_all(self, timeout: float) -> bool:
        """List every connected agent concurrently, each with deadline ``timeout``.

        An agent that fails or is down keeps its cached sessions; none can stall the rest.
        The caller reports the change (once for all agents, not once per agent).

        Returns:
            True if any agent's rows changed.
        """
        up = [c for c in self.clients.values() if c.tunnel.up]
        return any(await asyncio.gather(*(self._list_one(c, timeout) for c in up)))

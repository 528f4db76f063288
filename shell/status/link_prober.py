"""The status service's own watch on the shell → agent direction.

Consoles report what their agent clients see (ReportLink), but a console is not always
open. When the status service is given the agent registry, :class:`LinkProber` keeps
one :class:`common.client.agent_client.AgentClient` per registered agent (Ping heartbeats over
the agents' :222 tunnels) and feeds their link health straight into the view, so the
shared view knows both directions of every agent at all times, with or without a
console. The registry is re-read at every heartbeat, so agents come and go without a
restart; an entry written again (a re-peer: new keys, even under the same file names) gets a
new client, so the tunnel uses what the entry says now.

Each client's tunnel socket (``<probe_sockets>/<agent_id>.sock``) is also what
``convocate-host agents`` / ``sessions`` reach the agent through when they can
(:mod:`hostctl.shared_tunnel`): a socket older than its registry entry is not used.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.client.agent_client import AgentClient, ClientSettings
from common.logging import get_logger
from common.proto_convert import link_report
from common.registry import AgentRecord, entry_written_ns, scan_registry
from common.tasks import cancel_and_wait
from shell.status.view import StatusView

__all__ = ["REPORTER", "LinkProber"]

REPORTER = "status-service"
log = get_logger(__name__)


class LinkProber:
    """Pings every registered agent and reports the shell → agent link into ``view``.

    Args:
        registry_dir: the agent registry (:mod:`common.registry`).
        settings: Ping interval, deadlines and where the tunnel sockets go.
        view: the status service's view.
    """

    def __init__(self, registry_dir: Path, settings: ClientSettings, view: StatusView) -> None:
        self.registry_dir = registry_dir
        self.settings = settings
        self.view = view
        self.clients: dict[str, AgentClient] = {}
        self._written: dict[str, int] = {}   # agent id -> its entry's write time when its client started
        self._task: asyncio.Task[None] | None = None

    def _report(self, client: AgentClient) -> None:
        self.view.report_link(link_report(client.agent_id, REPORTER, client.control_link(),
                                          client.agent_status_link))

    def _written_ns(self, record: AgentRecord) -> int:
        try:
            return entry_written_ns(self.registry_dir, record)
        except OSError:
            return -1   # mid-rewrite: read again at the next sync

    async def _sync(self) -> None:
        records, _broken = scan_registry(self.registry_dir)
        wanted = {r.agent_id: r for r in records}
        written = {a: self._written_ns(r) for a, r in wanted.items()}
        for agent_id in [a for a, c in self.clients.items()
                         if wanted.get(a) != c.record or written.get(a) != self._written.get(a)]:
            self._written.pop(agent_id, None)
            # Dropped only once closed: a sync cancelled mid-close leaves it for close() to finish.
            await self.clients[agent_id].close()
            del self.clients[agent_id]
        for agent_id, record in wanted.items():
            if agent_id not in self.clients:
                client = AgentClient(record, self.settings, self._report)
                self.clients[agent_id] = client
                self._written[agent_id] = written[agent_id]
                await client.start()
        for client in self.clients.values():  # repeat: reports expire unless renewed
            self._report(client)

    async def _run(self) -> None:
        while True:
            try:
                await self._sync()
            except Exception:  # a bad registry read must not end the probing
                log.exception("link prober: registry sync failed", registry=str(self.registry_dir))
            await asyncio.sleep(self.settings.heartbeat_interval)

    def client_for(self, agent_id: str, entry_written_ns: int) -> tuple[AgentClient | None, str]:
        """The agent's client if its tunnel was made from the entry written at ``entry_written_ns``
        (what a caller's registry says now; 0: whichever) and is up; else None and why."""
        client = self.clients.get(agent_id)
        if client is None:
            return None, "the status service keeps no tunnel to this agent"
        if entry_written_ns and self._written.get(agent_id) != entry_written_ns:
            return None, ("the status service's tunnel was made from another registry entry "
                          "(peered again since)")
        if not client.tunnel.up:
            return None, f"the status service's tunnel is down: {client.last_error}"
        return client, ""

    def agent_ids(self) -> list[str]:
        """The agents this prober keeps a client for, sorted."""
        return sorted(self.clients)

    async def start(self) -> None:
        """Start probing in the background."""
        self._task = asyncio.create_task(self._run(), name="link-prober")

    async def close(self) -> None:
        """Stop probing and close every tunnel."""
        try:
            if self._task is not None:
                await cancel_and_wait([self._task])
                self._task = None
        finally:  # a close cancelled while the prober ends still closes every tunnel
            await asyncio.gather(*(c.close() for c in self.clients.values()))
            self.clients.clear()
            self._written.clear()

"""The shell's local connection to the status service: watch the shared view, report links, ask agents.

Local consumers (the console's router, CLI listings) do not keep their own idea of an
agent's health: they :meth:`StatusClient.run` a Watch on the status socket, so every
consumer shows the one shared view, and they report what their agent clients see of
the shell → agent direction with ReportLink, so the status service knows it too.
:func:`ask_agents` has the service ask agents through its tunnels (AskAgents,
:mod:`shell.status.ask`) for ``convocate-host agents`` / ``sessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from convocate.v1 import link_pb2, status_pb2, status_pb2_grpc

from common.backoff import Backoff
from common.domain import AgentInfo, HostHealth, LinkState, Session
from common.errors import ConvocateError, from_rpc_error
from common.grpc_options import CLIENT_OPTIONS
from common.logging import get_logger
from common.proto_convert import (
    agent_info_from_proto,
    host_health_from_proto,
    link_report,
    session_from_proto,
)
from common.tasks import TaskSet

__all__ = ["AskedAgent", "StatusClient", "ask_agents"]

log = get_logger(__name__)
REPORT_TIMEOUT = 2.0
ASK_MARGIN = 2.0   # s the AskAgents stream may outlast the agents' own deadline (the service's part)


@dataclass(frozen=True)
class AskedAgent:
    """One agent's answer through the status service.

    ``answered`` False: the service did not reach it (``error`` says why); ask it directly.
    ``answered`` True with ``error``: it answered Ping, then its List used the whole deadline.
    """

    agent_id: str
    answered: bool
    error: str
    info: AgentInfo | None
    sessions: list[Session]


async def ask_agents(socket: Path, entries: dict[str, int], *, with_sessions: bool,
                     timeout: float) -> AsyncIterator[AskedAgent]:
    """The status service's answers for ``entries`` (agent id -> its registry entry's write time).

    One per agent, as each ends; an answer for an agent not asked is dropped. What the
    agents said is converted here, as their own answers would be.

    Raises:
        ConvocateError: the call failed (an older service without AskAgents: UNIMPLEMENTED).
    """
    request = status_pb2.AskAgentsRequest(
        agents=[status_pb2.AgentEntry(agent_id=a, entry_written_ns=ns) for a, ns in entries.items()],
        with_sessions=with_sessions, timeout_seconds=timeout)
    channel = grpc.aio.insecure_channel(f"unix:{socket}", options=CLIENT_OPTIONS)
    call = status_pb2_grpc.StatusStub(channel).AskAgents(request, timeout=timeout + ASK_MARGIN)
    try:
        async for a in call:
            if a.agent_id not in entries:
                log.warning("status service answered for an agent not asked", agent=a.agent_id[:64])
                continue
            try:
                info = agent_info_from_proto(a.ping) if a.answered else None
                sessions = [session_from_proto(m, a.agent_id) for m in a.sessions]
            except ConvocateError as e:   # a field no agent may send: this answer only, not the rest
                yield AskedAgent(a.agent_id, False, f"its answer could not be read: {e}", None, [])
                continue
            yield AskedAgent(a.agent_id, a.answered, a.error, info, sessions)
    except grpc.RpcError as e:
        raise from_rpc_error(e, peer="the status service") from None
    finally:
        call.cancel()
        await channel.close(grace=None)


class StatusClient:
    """Watches the shared health view and sends link reports, reconnecting as needed.

    Args:
        socket: the status service's gRPC socket (local, no SSH).
        reporter: who reports (e.g. ``console:1234``), for the service's logs.
        on_change: called with the changed agent's id after each update (``""`` = all).
        resend_interval: seconds between repeats of the latest reports (the service
            forgets reports nobody repeats: a console that exited stops vouching).
    """

    def __init__(self, socket: Path, reporter: str, on_change: Callable[[str], None],
                 resend_interval: float = 30.0) -> None:
        self.socket = socket
        self.resend_interval = resend_interval
        self.reporter = reporter
        self._on_change = on_change
        self.health: dict[str, status_pb2.AgentHealth] = {}
        self.connected = False
        self._channel: grpc.aio.Channel | None = None
        self._pending: dict[str, status_pb2.LinkReport] = {}
        self._latest: dict[str, status_pb2.LinkReport] = {}
        self._wake = asyncio.Event()
        self._tasks = TaskSet("status-client")

    def _ch(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}", options=CLIENT_OPTIONS)
        return self._channel

    async def start(self) -> None:
        """Start watching and reporting in the background."""
        self._tasks.create_task(self._watch(), name="status-watch")
        self._tasks.create_task(self._report(), name="status-report")

    async def close(self) -> None:
        """Withdraw our link reports (best effort, 1 s), stop the tasks, close the channel."""
        await self._tasks.aclose()
        if self._latest and self.connected:
            stub = status_pb2_grpc.StatusStub(self._ch())
            withdrawals = [
                stub.ReportLink(status_pb2.LinkReport(agent_id=agent_id, reporter=self.reporter,
                                                      control_link=link_pb2.LinkState(known=False)),
                                timeout=1.0)
                for agent_id in self._latest
            ]
            await asyncio.gather(*withdrawals, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None

    def host_health(self, agent_id: str) -> HostHealth | None:
        """The agent's engine and host health as the shared view last heard it (None: not known)."""
        health = self.health.get(agent_id)
        return host_health_from_proto(health.host) if health is not None and health.HasField("host") else None

    # --- reporting ----------------------------------------------------------------------
    def report(self, agent_id: str, control: LinkState, agent_status: LinkState | None) -> None:
        """Queue a link report (the latest per agent wins; sent in the background)."""
        report = link_report(agent_id, self.reporter, control, agent_status)
        self._pending[agent_id] = self._latest[agent_id] = report
        self._wake.set()

    async def _report(self) -> None:
        backoff = Backoff(initial=0.2, maximum=5.0)
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout keeps cancellations (wait_for may not)
                async with asyncio.timeout(self.resend_interval):
                    await self._wake.wait()
            if not self._wake.is_set():
                self._pending.update(self._latest)  # the periodic repeat
            self._wake.clear()
            while self._pending:
                agent_id, report = next(iter(self._pending.items()))
                try:
                    await status_pb2_grpc.StatusStub(self._ch()).ReportLink(report, timeout=REPORT_TIMEOUT)
                except grpc.RpcError as e:
                    log.info("link report not delivered", agent=agent_id, error=str(e.details()
                             if isinstance(e, grpc.aio.AioRpcError) else e))
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                if self._pending.get(agent_id) is report:
                    del self._pending[agent_id]

    # --- watching -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        backoff = Backoff(initial=0.2, maximum=5.0)
        while True:
            call = status_pb2_grpc.StatusStub(self._ch()).Watch(status_pb2.WatchRequest())
            try:
                async for update in call:
                    self._apply(update)
                    backoff.reset()
            except grpc.RpcError as e:
                detail = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
                if self.connected:
                    log.warning("status service watch lost", socket=str(self.socket), error=detail)
            finally:
                call.cancel()
            if self.connected:
                self.connected = False
                self.health.clear()
                self._on_change("")
            self._wake.set()  # resend reports after the service comes back
            await asyncio.sleep(backoff.next_delay())

    def _apply(self, update: status_pb2.ViewUpdate) -> None:
        kind = update.WhichOneof("update")
        if kind == "snapshot":
            self.connected = True
            self.health = {a.agent_id: a for a in update.snapshot.agents}
            # A restarted status service knows nothing of our links: tell it again.
            self._pending.update({k: v for k, v in self._latest.items() if k not in self._pending})
            self._wake.set()
            self._on_change("")
        elif kind == "agent":
            self.health[update.agent.agent_id] = update.agent
            self._on_change(update.agent.agent_id)

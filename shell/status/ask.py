"""AskAgents: the status service asks agents through its standing tunnels, for a local caller.

``convocate-host agents`` / ``sessions`` ask every registered agent at once. Through the
status service's tunnels each agent used to cost the command a gRPC channel of its own
(a socket, an HTTP/2 handshake, two calls), and the service a forward of those bytes;
at 50 agents the command's CPU grew by half (issue 13). One AskAgents call instead: the
service asks each named agent over the client it already keeps (Ping and, if asked,
ListSessions, concurrently, under the caller's deadline) and streams one
:class:`AgentAnswer` per agent as each ends (a request that names none: every agent it
keeps a tunnel to, for a person with grpcurl). Nothing is cached: every answer is what the
agent said just now, passed on unconverted (the caller converts and checks it, as for an
agent it asks itself: what an agent says is untrusted).

An agent is asked here only under the caller's own registry entry: the service's client
must have been made from the entry written when the caller read it (a re-peered agent is
not asked over the old record) and its tunnel must be up. Otherwise, or when Ping fails
within :data:`common.client.PING_DEADLINE`, or a later call fails early, the answer is
``answered = False`` with why, and the caller asks that agent itself. A List that used
the whole deadline after Ping answered is the agent's error (asked again it would take a
second deadline). An answer too large to pass on is sent as not answered, never the
stream's end.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from typing import Protocol

from convocate.v1 import sessions_pb2, status_pb2

from common.client import PING_DEADLINE
from common.errors import ConvocateError, InvalidArgumentError
from common.grpc_options import MAX_MESSAGE_BYTES
from common.registry import validate_agent_id
from common.tasks import cancel_and_wait

__all__ = ["MAX_AGENTS", "MAX_TIMEOUT", "AgentAsker", "Asked", "Clients"]

MAX_AGENTS = 10_000        # agents one request may name
MAX_TIMEOUT = 300.0        # s, the longest deadline a caller may ask for
ANSWER_BYTES = MAX_MESSAGE_BYTES - 64 * 1024   # what the caller's channel takes, with room to spare


class Asked(Protocol):
    """What is asked of one agent's client (:class:`common.client.agent_client.AgentClient`)."""

    async def ping_message(self, timeout: float | None = None) -> sessions_pb2.PingResponse: ...

    async def list_message(self, timeout: float | None = None) -> sessions_pb2.ListSessionsResponse: ...


class Clients(Protocol):
    """Where the agents' clients are (:class:`shell.status.link_prober.LinkProber`)."""

    def client_for(self, agent_id: str, entry_written_ns: int) -> tuple[Asked | None, str]: ...

    def agent_ids(self) -> list[str]: ...


def _entries(request: status_pb2.AskAgentsRequest, clients: Clients) -> dict[str, int]:
    """The request's agents (id -> entry write time, 0: any), checked; none named: every client's."""
    if not request.agents:
        return dict.fromkeys(clients.agent_ids(), 0)
    if len(request.agents) > MAX_AGENTS:
        raise InvalidArgumentError(f"at most {MAX_AGENTS} agents per request, not {len(request.agents)}")
    entries: dict[str, int] = {}
    for a in request.agents:
        validate_agent_id(a.agent_id)
        if a.agent_id in entries:
            raise InvalidArgumentError(f"agent {a.agent_id!r} is named twice")
        entries[a.agent_id] = a.entry_written_ns
    return entries


def _deadline(request: status_pb2.AskAgentsRequest, default: float) -> float:
    t = request.timeout_seconds
    if t == 0:
        return default
    if not (math.isfinite(t) and 0 < t <= MAX_TIMEOUT):
        raise InvalidArgumentError(f"timeout_seconds must be in (0, {MAX_TIMEOUT:g}], not {t}")
    return t


class AgentAsker:
    """Answers AskAgents over ``clients``.

    Args:
        clients: the service's agent clients.
        call_timeout: the deadline when a request names none.
    """

    def __init__(self, clients: Clients, call_timeout: float) -> None:
        self.clients = clients
        self.call_timeout = call_timeout

    async def ask(self, request: status_pb2.AskAgentsRequest) -> AsyncGenerator[status_pb2.AgentAnswer, None]:
        """One answer per named agent, as each ends (a caller that goes away cancels the rest).

        Raises:
            InvalidArgumentError: too many agents, an invalid or repeated id, a bad deadline.
        """
        entries = _entries(request, self.clients)
        timeout = _deadline(request, self.call_timeout)
        tasks = [asyncio.ensure_future(self._one(agent_id, written, request.with_sessions, timeout))
                 for agent_id, written in entries.items()]
        try:
            for done in asyncio.as_completed(tasks):
                yield await done
        finally:
            await cancel_and_wait(tasks)

    async def _one(self, agent_id: str, written_ns: int, with_sessions: bool,
                   timeout: float) -> status_pb2.AgentAnswer:
        client, why = self.clients.client_for(agent_id, written_ns)
        if client is None:
            return status_pb2.AgentAnswer(agent_id=agent_id, error=why)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Ping and List in flight together: one round trip, as the command does itself.
        listing = asyncio.ensure_future(client.list_message(timeout)) if with_sessions else None
        try:
            try:
                ping = await client.ping_message(min(PING_DEADLINE, timeout))
            except ConvocateError as e:
                return status_pb2.AgentAnswer(agent_id=agent_id, error=str(e))
            answer = status_pb2.AgentAnswer(agent_id=agent_id, answered=True, ping=ping)
            if listing is not None:
                try:
                    answer.sessions.extend((await listing).sessions)
                except ConvocateError as e:
                    if loop.time() - started < timeout:   # failed early: the caller asks it itself
                        return status_pb2.AgentAnswer(agent_id=agent_id, error=str(e))
                    answer.error = str(e)   # the whole deadline went: asked again, it would take another
        finally:
            if listing is not None:
                await cancel_and_wait([listing])   # ended by now, unless Ping failed or we are cancelled
        if answer.ByteSize() > ANSWER_BYTES:
            return status_pb2.AgentAnswer(agent_id=agent_id, error=(
                f"its answer ({answer.ByteSize()} bytes) is too large to pass on"))
        return answer

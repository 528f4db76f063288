"""One agent, seen from the shell side: a persistent tunnel, a Ping heartbeat, typed calls.

:class:`AgentClient` keeps one :class:`common.tunnel.Tunnel` to the agent (reconnects
with capped, jittered backoff and a fresh gRPC channel), pings it every
``heartbeat_interval`` s with a deadline, and tracks the health of the shell → agent
link, plus the agent's own view of its status link (from PingResponse). Every call
has a deadline. Calls return :mod:`common.domain` types; this module and
:mod:`common.client.attach_call` are the only places on the client side where gRPC
errors become domain errors (:func:`common.errors.from_rpc_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
from convocate.v1 import sessions_pb2, sessions_pb2_grpc

from common.backoff import Backoff
from common.client.attach_call import AttachCall
from common.domain import AgentInfo, LinkState, Session, SessionEvent
from common.errors import ConvocateError, UnavailableError, from_rpc_error
from common.logging import get_logger
from common.proto_convert import agent_info_from_proto, session_event_from_proto, session_from_proto
from common.registry import AgentRecord
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["AgentClient", "ClientSettings"]

T = TypeVar("T")
log = get_logger(__name__)


def _cancelled_by_caller() -> bool:
    """True if our own task is being cancelled (not a call cancelled by a closed channel)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _gist(link: LinkState | None) -> tuple[bool, bool, str, int] | None:
    """What matters of a link for change detection (not its timestamps)."""
    return None if link is None else (link.known, link.up, link.last_error, link.dropped_events)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClientSettings:
    """How a client talks to every agent (the same for all of them)."""

    runtime_dir: Path                    # private dir for the local tunnel sockets
    heartbeat_interval: float = 30.0     # Ping period
    call_timeout: float = 10.0           # deadline of every unary call
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0      # SSH keepalive (x3 = a frozen link is dropped)
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    client_id: str = f"shell:{os.getpid()}"


class AgentClient:
    """A persistent connection to one agent.

    Every call method raises :class:`common.errors.UnavailableError` when the agent is
    unreachable or misses the deadline (naming the agent and why), and the other
    :class:`common.errors.ConvocateError` subclasses with the agent's own message
    (NotFoundError, AlreadyExistsError, InvalidArgumentError, FailedPreconditionError...).

    Args:
        record: the agent's registry entry.
        settings: timing and where the local sockets go.
        on_change: called (in the loop) whenever reachability or link details change.
    """

    def __init__(self, record: AgentRecord, settings: ClientSettings,
                 on_change: Callable[[AgentClient], None] | None = None) -> None:
        self.record = record
        self.agent_id = record.agent_id
        self.settings = settings
        self._on_change = on_change
        self.tunnel = Tunnel(TunnelSettings(
            name=record.agent_id, host=record.address, port=record.port,
            client_key=record.client_key, known_hosts=record.known_hosts,
            local_socket=settings.runtime_dir / f"{record.agent_id}.sock",
            connect_timeout=settings.connect_timeout, keepalive_interval=settings.keepalive_interval,
            backoff=Backoff(initial=settings.backoff_initial, maximum=settings.backoff_max),
        ))
        self.reachable = False
        self.last_error = "not connected yet"
        self.version = ""
        self.hostname = ""
        self.agent_status_link: LinkState | None = None
        self._since = _now()
        self._last_ok: datetime | None = None
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the tunnel and the heartbeat (returns at once)."""
        self.tunnel.add_listener(self._tunnel_changed)
        await self.tunnel.start()
        self._task = asyncio.create_task(self._heartbeat(), name=f"ping-{self.agent_id}")

    async def close(self) -> None:
        """Stop the heartbeat and close the tunnel."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.tunnel.close()

    async def __aenter__(self) -> AgentClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- link health -----------------------------------------------------------------------
    def control_link(self) -> LinkState:
        """The shell → agent link as this client sees it."""
        return LinkState(up=self.reachable, known=True, since=self._since, last_ok=self._last_ok,
                         last_error="" if self.reachable else self.last_error)

    def _set(self, reachable: bool, error: str = "") -> None:
        old = (self.reachable, self.last_error)
        if not reachable:
            self.last_error = error or self.last_error
        if reachable != self.reachable:
            self.reachable = reachable
            self._since = _now()
            if reachable:
                log.info("agent reachable", agent=self.agent_id, version=self.version)
            else:
                log.warning("agent unreachable", agent=self.agent_id, error=self.last_error)
        if old != (self.reachable, self.last_error) and self._on_change is not None:
            self._on_change(self)

    def _tunnel_changed(self, up: bool, error: str) -> None:
        if up:
            self._kick.set()  # ping at once: the table should not wait a whole interval
        else:
            self._set(False, error)

    def _pinged(self, reply: AgentInfo) -> None:
        self._last_ok = _now()
        status_link = reply.status_link if reply.status_link is not None else self.agent_status_link
        changed = (reply.version, reply.hostname, _gist(status_link)) != (
            self.version, self.hostname, _gist(self.agent_status_link))
        self.version, self.hostname, self.agent_status_link = reply.version, reply.hostname, status_link
        if changed and self.reachable and self._on_change is not None:
            self._on_change(self)
        self._set(True)

    async def _heartbeat(self) -> None:
        while True:
            if self.tunnel.up:
                try:
                    self._pinged(await self.ping())
                except ConvocateError as e:
                    self._set(False, str(e))
            else:  # the tunnel's latest reason (e.g. "refused our key" after "connection lost")
                self._set(False, self.tunnel.last_error)
            self._kick.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_interval):
                    await self._kick.wait()

    def kick(self) -> None:
        """Ping now (e.g. after a failed call), instead of at the next interval."""
        self._kick.set()

    # --- calls -------------------------------------------------------------------------------
    def attach(self) -> AttachCall:
        """A new Attach stream to this agent (opened by :meth:`AttachCall.start`).

        Raises:
            UnavailableError: the agent is unreachable (with the reason).
        """
        return AttachCall(self.tunnel.channel, self.agent_id)

    def _unreachable(self) -> UnavailableError:
        return UnavailableError(f"agent {self.agent_id} is unreachable: {self.tunnel.last_error}")

    async def _call(self, fn: Callable[[sessions_pb2_grpc.SessionsAsyncStub], Awaitable[T]]) -> T:
        stub = sessions_pb2_grpc.SessionsStub(self.tunnel.channel)
        try:
            return await fn(stub)
        except grpc.RpcError as e:
            err = from_rpc_error(e, peer=self.agent_id)
            if isinstance(err, UnavailableError):
                self.kick()
            raise err from None
        except asyncio.CancelledError:
            if _cancelled_by_caller():
                raise
            # grpc.aio cancels calls in flight when the tunnel closes their channel.
            self.kick()
            raise self._unreachable() from None

    async def _session_call(
        self, fn: Callable[[sessions_pb2_grpc.SessionsAsyncStub], Awaitable[sessions_pb2.Session]]
    ) -> Session:
        return session_from_proto(await self._call(fn), self.agent_id)

    async def ping(self) -> AgentInfo:
        """Ping with a deadline of min(call timeout, heartbeat interval)."""
        timeout = min(self.settings.call_timeout, self.settings.heartbeat_interval)
        request = sessions_pb2.PingRequest(client_id=self.settings.client_id)
        return agent_info_from_proto(await self._call(lambda s: s.Ping(request, timeout=timeout)))

    async def list_sessions(self, timeout: float | None = None) -> list[Session]:
        """Every session of this agent (deadline ``timeout`` or the call timeout)."""
        t = timeout or self.settings.call_timeout
        reply = await self._call(lambda s: s.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=t))
        return [session_from_proto(m, self.agent_id) for m in reply.sessions]

    async def get(self, session_id: str) -> Session:
        """One session."""
        req = sessions_pb2.GetSessionRequest(id=session_id)
        return await self._session_call(lambda s: s.GetSession(req, timeout=self.settings.call_timeout))

    async def create(self, name: str, port: int, protocol: str, dns_name: str, *,
                     start: bool = False) -> Session:
        """Create a session (``start`` also starts its container)."""
        req = sessions_pb2.CreateSessionRequest(name=name, port=port, protocol=protocol,
                                                dns_name=dns_name, start=start)
        return await self._session_call(lambda s: s.CreateSession(req, timeout=self.settings.call_timeout))

    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> Session:
        """Replace a session's name, port, protocol and DNS name."""
        req = sessions_pb2.UpdateSessionRequest(id=session_id, name=name, port=port, protocol=protocol,
                                                dns_name=dns_name)
        return await self._session_call(lambda s: s.UpdateSession(req, timeout=self.settings.call_timeout))

    async def clone(self, session_id: str, name: str) -> Session:
        """Copy a session to a new one on the same agent."""
        req = sessions_pb2.CloneSessionRequest(source_id=session_id, name=name)
        return await self._session_call(lambda s: s.CloneSession(req, timeout=self.settings.call_timeout))

    async def delete(self, session_id: str) -> None:
        """Delete a session (the agent stops its container first)."""
        req = sessions_pb2.DeleteSessionRequest(id=session_id)
        await self._call(lambda s: s.DeleteSession(req, timeout=self.settings.call_timeout))

    async def kill(self, session_id: str) -> None:
        """Stop a session's container."""
        req = sessions_pb2.KillSessionRequest(id=session_id)
        await self._call(lambda s: s.KillSession(req, timeout=self.settings.call_timeout))

    async def background(self, session_id: str) -> None:
        """Detach every viewer from a session."""
        req = sessions_pb2.BackgroundSessionRequest(id=session_id)
        await self._call(lambda s: s.BackgroundSession(req, timeout=self.settings.call_timeout))

    async def restart(self, session_id: str) -> Session:
        """Start a stopped session."""
        req = sessions_pb2.RestartSessionRequest(id=session_id)
        return await self._session_call(lambda s: s.RestartSession(req, timeout=self.settings.call_timeout))

    async def watch_sessions(self) -> AsyncIterator[SessionEvent]:
        """The agent's change stream: snapshot (EXISTING..., SYNCED), then live changes.

        Events of a kind this client does not know are skipped.

        No deadline (it is long-lived); keepalives end it when the link dies.

        Raises:
            ConvocateError: the stream failed (translated from gRPC).
        """
        call = sessions_pb2_grpc.SessionsStub(self.tunnel.channel).WatchSessions(
            sessions_pb2.WatchSessionsRequest())
        try:
            async for message in call:
                event = session_event_from_proto(message, self.agent_id)
                if event is not None:
                    yield event
        except grpc.RpcError as e:
            raise from_rpc_error(e, peer=self.agent_id) from None
        except asyncio.CancelledError:
            if _cancelled_by_caller():
                raise
            raise self._unreachable() from None
        finally:
            call.cancel()

"""Typed calls on one agent's gRPC channel: domain types in and out, domain errors.

:class:`AgentCalls` is the call surface of :class:`common.client.agent_client.AgentClient`
(which adds the persistent tunnel and the heartbeat); used on its own it serves callers
that bring their own channel (a one-shot tunnel, the agent's socket in a benchmark).
Every unary call has a deadline. This module and :mod:`common.client.attach_call` are
the only places on the client side where a ``grpc.RpcError`` becomes a domain error.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from convocate.v1 import sessions_pb2, sessions_pb2_grpc

from common.client.attach_call import AttachCall, AttachHandle
from common.domain import AgentInfo, Screen, Session, SessionEvent, SessionLogEntry
from common.errors import UnavailableError, from_rpc_error
from common.proto_convert import (
    agent_info_from_proto,
    log_entry_from_proto,
    screen_from_proto,
    session_event_from_proto,
    session_from_proto,
)

__all__ = ["AgentCalls", "Listing"]

T = TypeVar("T")
M = TypeVar("M")


@dataclass(frozen=True)
class Listing:
    """One ListSessions answer: a fingerprint of what it says, and its sessions when asked.

    Two answers with the same fingerprint list the same sessions with the same fields,
    except when a state that is known was read (the agent stamps ``state_known_at`` at
    every list; here it is kept only for sessions whose state is unknown, where it says
    since when). A caller that already holds the answer a fingerprint names skips
    :meth:`sessions`, the conversion of every session.
    """

    fingerprint: bytes
    convert: Callable[[], list[Session]]

    def sessions(self) -> list[Session]:
        """The sessions of this answer."""
        return self.convert()


def _cancelled_by_caller() -> bool:
    """True if our own task is being cancelled (not a call cancelled by a closed channel)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AgentCalls:
    """Every Sessions call, and new Attach streams, on the channel ``channel()`` returns.

    Every call raises :class:`common.errors.UnavailableError` when the agent is
    unreachable or misses the deadline (naming the agent and why), and the other
    :class:`common.errors.ConvocateError` subclasses with the agent's own message
    (NotFoundError, AlreadyExistsError, InvalidArgumentError, FailedPreconditionError...).

    Args:
        agent_id: the agent's id (named in error messages).
        channel: returns the current channel (may raise UnavailableError).
        call_timeout: the deadline of every unary call.
        ping_timeout: the deadline of Ping (default: the call timeout).
        client_id: who pings (for the agent's inbound-link view).
        on_unavailable: called when a call finds the agent unreachable.
    """

    def __init__(self, agent_id: str, channel: Callable[[], grpc.aio.Channel], *,
                 call_timeout: float = 10.0, ping_timeout: float | None = None, client_id: str = "",
                 on_unavailable: Callable[[], None] | None = None) -> None:
        self.agent_id = agent_id
        self._channel = channel
        self.call_timeout = call_timeout
        self.ping_timeout = ping_timeout or call_timeout
        self.client_id = client_id
        self._unavailable_hook = on_unavailable
        self._stub_of: tuple[grpc.aio.Channel, sessions_pb2_grpc.SessionsAsyncStub] | None = None

    def _on_unavailable(self) -> None:
        if self._unavailable_hook is not None:
            self._unavailable_hook()

    def attach(self) -> AttachHandle:
        """A new Attach stream to this agent (opened by :meth:`AttachCall.start`).

        Raises:
            UnavailableError: the agent is unreachable (with the reason).
        """
        return AttachCall(self._channel(), self.agent_id, self.client_id)

    def _unreachable_reason(self) -> str:
        return "the connection was closed"

    def _unreachable(self) -> UnavailableError:
        return UnavailableError(f"agent {self.agent_id} is unreachable: {self._unreachable_reason()}")

    def _stub(self) -> sessions_pb2_grpc.SessionsAsyncStub:
        """The stub on the current channel (made once per channel: a stub builds every method)."""
        channel = self._channel()
        if self._stub_of is None or self._stub_of[0] is not channel:
            self._stub_of = (channel, sessions_pb2_grpc.SessionsStub(channel))
        return self._stub_of[1]

    async def _call(self, fn: Callable[[sessions_pb2_grpc.SessionsAsyncStub], Awaitable[T]]) -> T:
        try:
            return await fn(self._stub())
        except grpc.RpcError as e:
            err = from_rpc_error(e, peer=self.agent_id)
            if isinstance(err, UnavailableError):
                self._on_unavailable()
            raise err from None
        except asyncio.CancelledError:
            if _cancelled_by_caller():
                raise
            # grpc.aio cancels calls in flight when the tunnel closes their channel.
            self._on_unavailable()
            raise self._unreachable() from None

    async def _stream(self, call: grpc.aio.UnaryStreamCall[Any, M]) -> AsyncIterator[M]:
        """The messages of a server stream: the streams' one point where gRPC errors become
        domain errors (no deadline: keepalives end a stream whose link died)."""
        try:
            async for message in call:
                yield message
        except grpc.RpcError as e:
            raise from_rpc_error(e, peer=self.agent_id) from None
        except asyncio.CancelledError:
            if _cancelled_by_caller():
                raise
            raise self._unreachable() from None
        finally:
            call.cancel()

    async def _session_call(
        self, fn: Callable[[sessions_pb2_grpc.SessionsAsyncStub], Awaitable[sessions_pb2.Session]]
    ) -> Session:
        return session_from_proto(await self._call(fn), self.agent_id)

    async def ping(self) -> AgentInfo:
        """Ping with the ping deadline."""
        return agent_info_from_proto(await self.ping_message())

    async def ping_message(self, timeout: float | None = None) -> sessions_pb2.PingResponse:
        """Ping as the agent answered it (deadline ``timeout`` or the ping deadline), unconverted:
        for the status service, which passes it on (the caller converts and checks it)."""
        request = sessions_pb2.PingRequest(client_id=self.client_id)
        t = timeout or self.ping_timeout
        return await self._call(lambda s: s.Ping(request, timeout=t))

    async def list_message(self, timeout: float | None = None) -> sessions_pb2.ListSessionsResponse:
        """ListSessions as the agent answered it (deadline ``timeout`` or the call timeout), unconverted."""
        t = timeout or self.call_timeout
        return await self._call(lambda s: s.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=t))

    async def list_sessions(self, timeout: float | None = None) -> list[Session]:
        """Every session of this agent (deadline ``timeout`` or the call timeout)."""
        return [session_from_proto(m, self.agent_id) for m in (await self.list_message(timeout)).sessions]

    async def listing(self, timeout: float | None = None) -> Listing:
        """Every session of this agent as a :class:`Listing` (deadline ``timeout`` or the call timeout)."""
        reply = await self.list_message(timeout)
        for m in reply.sessions:
            if not m.state_unknown:
                m.ClearField("state_known_at")
        digest = hashlib.blake2b(reply.SerializeToString(deterministic=True), digest_size=16).digest()
        return Listing(digest, lambda: [session_from_proto(m, self.agent_id) for m in reply.sessions])

    async def get(self, session_id: str) -> Session:
        """One session."""
        req = sessions_pb2.GetSessionRequest(id=session_id)
        return await self._session_call(lambda s: s.GetSession(req, timeout=self.call_timeout))

    async def create(self, name: str, port: int, protocol: str, dns_name: str, *,
                     start: bool = False) -> Session:
        """Create a session (``start`` also starts its container)."""
        req = sessions_pb2.CreateSessionRequest(name=name, port=port, protocol=protocol,
                                                dns_name=dns_name, start=start)
        return await self._session_call(lambda s: s.CreateSession(req, timeout=self.call_timeout))

    async def update(self, session_id: str, name: str, port: int, protocol: str,
                     dns_name: str) -> Session:
        """Replace a session's name, port, protocol and DNS name."""
        req = sessions_pb2.UpdateSessionRequest(id=session_id, name=name, port=port, protocol=protocol,
                                                dns_name=dns_name)
        return await self._session_call(lambda s: s.UpdateSession(req, timeout=self.call_timeout))

    async def clone(self, session_id: str, name: str) -> Session:
        """Copy a session to a new one on the same agent."""
        req = sessions_pb2.CloneSessionRequest(source_id=session_id, name=name)
        return await self._session_call(lambda s: s.CloneSession(req, timeout=self.call_timeout))

    async def delete(self, session_id: str) -> None:
        """Delete a session (the agent stops its container first)."""
        req = sessions_pb2.DeleteSessionRequest(id=session_id)
        await self._call(lambda s: s.DeleteSession(req, timeout=self.call_timeout))

    async def kill(self, session_id: str) -> None:
        """Stop a session's container."""
        req = sessions_pb2.KillSessionRequest(id=session_id)
        await self._call(lambda s: s.KillSession(req, timeout=self.call_timeout))

    async def background(self, session_id: str) -> None:
        """Detach every viewer from a session."""
        req = sessions_pb2.BackgroundSessionRequest(id=session_id)
        await self._call(lambda s: s.BackgroundSession(req, timeout=self.call_timeout))

    async def restart(self, session_id: str) -> Session:
        """Start a stopped session."""
        req = sessions_pb2.RestartSessionRequest(id=session_id)
        return await self._session_call(lambda s: s.RestartSession(req, timeout=self.call_timeout))

    async def peek(self, session_id: str, lines: int = 0) -> Screen:
        """A running session's last screen (``lines``: that many last lines; 0: the visible screen)."""
        req = sessions_pb2.PeekSessionRequest(id=session_id, lines=lines)
        return screen_from_proto(await self._call(lambda s: s.PeekSession(req, timeout=self.call_timeout)))

    async def reply(self, session_id: str, text: str, sender: str = "") -> None:
        """Type one line into a running session, then Enter (``sender`` defaults to this client's id)."""
        req = sessions_pb2.ReplySessionRequest(id=session_id, text=text, sender=sender or self.client_id)
        await self._call(lambda s: s.ReplySession(req, timeout=self.call_timeout))

    async def session_log(self, session_id: str, limit: int = 0) -> list[SessionLogEntry]:
        """The last ``limit`` entries of a session's event log (0: the agent's default), oldest first."""
        req = sessions_pb2.SessionLogRequest(id=session_id, limit=limit)

        async def read(stub: sessions_pb2_grpc.SessionsAsyncStub) -> list[SessionLogEntry]:
            return [log_entry_from_proto(m) async for m in stub.SessionLog(req, timeout=self.call_timeout)]

        return await self._call(read)

    async def follow_session_log(self, session_id: str, limit: int = 0) -> AsyncIterator[SessionLogEntry]:
        """The last ``limit`` entries of a session's event log, then every new one (no deadline).

        Raises:
            ConvocateError: the stream failed (translated from gRPC).
        """
        req = sessions_pb2.SessionLogRequest(id=session_id, limit=limit, follow=True)
        async for message in self._stream(self._stub().SessionLog(req)):
            yield log_entry_from_proto(message)

    async def watch_sessions(self) -> AsyncIterator[SessionEvent]:
        """The agent's change stream: snapshot (EXISTING..., SYNCED), then live changes.

        Events of a kind this client does not know are skipped.

        No deadline (it is long-lived); keepalives end it when the link dies.

        Raises:
            ConvocateError: the stream failed (translated from gRPC).
        """
        call = self._stub().WatchSessions(sessions_pb2.WatchSessionsRequest())
        async for message in self._stream(call):
            event = session_event_from_proto(message, self.agent_id)
            if event is not None:
                yield event

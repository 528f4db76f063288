# ruff: noqa: ARG002 - gRPC fixes the handler signature (request, context)
"""The ``convocate.v1.Sessions`` servicer: protobuf at the edge, the manager inside.

Handlers raise domain errors; ``common.grpc_server.ErrorInterceptor`` turns them into
status codes, so no handler calls ``context.abort``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from convocate.v1 import link_pb2, sessions_pb2, sessions_pb2_grpc

from agent.container_spec import read_current_image
from agent.event_hub import EventHub
from agent.events import InboundLinkTracker, session_event
from agent.manager import SessionManager
from agent.sessions import SessionView
from common.domain import HostHealth, SessionEvent, SessionEventKind
from common.errors import InvalidArgumentError, ResourceExhaustedError, UnavailableError
from common.proto_convert import (
    host_health_to_proto,
    log_entry_to_proto,
    screen_to_proto,
    session_event_to_proto,
    session_to_proto,
    timestamp,
)
from common.version import VERSION

__all__ = ["SessionsService"]

Context = grpc.aio.ServicerContext[Any, Any]


def _require_id(value: str, field: str = "id") -> str:
    if not value.strip():
        raise InvalidArgumentError(f"{field} is required")
    return value.strip()


class SessionsService(sessions_pb2_grpc.SessionsServicer):
    """Every session operation of one agent."""

    def __init__(
        self,
        manager: SessionManager,
        hub: EventHub,
        tracker: InboundLinkTracker,
        status_link: Callable[[], link_pb2.LinkState] | None = None,
        *,
        health: Callable[[], HostHealth] | None = None,
    ) -> None:
        self.manager = manager
        self.hub = hub
        self.tracker = tracker
        self.status_link = status_link
        self.health = health
        self.hostname = socket.gethostname()

    @property
    def agent_id(self) -> str:
        """This agent's id."""
        return self.manager.agent_id

    def _session(self, view: SessionView) -> sessions_pb2.Session:
        return session_to_proto(view.session(self.agent_id))

    async def Ping(  # noqa: N802
        self, request: sessions_pb2.PingRequest, context: Context
    ) -> sessions_pb2.PingResponse:
        """Liveness and heartbeat; records who pinged for the inbound-link view."""
        self.tracker.record_ping(request.client_id)
        link = self.status_link() if self.status_link is not None else link_pb2.LinkState(known=False)
        reply = sessions_pb2.PingResponse(
            agent_id=self.agent_id, version=VERSION, server_time=timestamp(),
            hostname=self.hostname, status_link=link, current_image=read_current_image(self.manager.config),
        )
        if self.health is not None:  # the cached result: Ping never waits on the engine
            reply.health.CopyFrom(host_health_to_proto(self.health()))
        return reply

    async def ListSessions(  # noqa: N802
        self, request: sessions_pb2.ListSessionsRequest, context: Context
    ) -> sessions_pb2.ListSessionsResponse:
        """Every session with live state, newest first."""
        views = await self.manager.list()
        return sessions_pb2.ListSessionsResponse(sessions=[self._session(v) for v in views],
                                                 agent_id=self.agent_id)

    async def GetSession(  # noqa: N802
        self, request: sessions_pb2.GetSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        """One session with live state."""
        return self._session(await self.manager.get(_require_id(request.id)))

    async def CreateSession(  # noqa: N802
        self, request: sessions_pb2.CreateSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        """A new session (started when ``start`` is set)."""
        view = await self.manager.create(request.name, request.port, request.protocol, request.dns_name,
                                         start=request.start)
        return self._session(view)

    async def UpdateSession(  # noqa: N802
        self, request: sessions_pb2.UpdateSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        """Replace name, port, protocol and DNS name."""
        view = await self.manager.update(_require_id(request.id), request.name, request.port,
                                         request.protocol, request.dns_name)
        return self._session(view)

    async def CloneSession(  # noqa: N802
        self, request: sessions_pb2.CloneSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        """A copy of a session's home under a new id."""
        source_id = _require_id(request.source_id, "source_id")
        return self._session(await self.manager.clone(source_id, request.name))

    async def DeleteSession(  # noqa: N802
        self, request: sessions_pb2.DeleteSessionRequest, context: Context
    ) -> sessions_pb2.DeleteSessionResponse:
        """Stop (if running) and remove a session."""
        await self.manager.delete(_require_id(request.id))
        return sessions_pb2.DeleteSessionResponse()

    async def KillSession(  # noqa: N802
        self, request: sessions_pb2.KillSessionRequest, context: Context
    ) -> sessions_pb2.KillSessionResponse:
        """Stop a session's container."""
        await self.manager.kill(_require_id(request.id))
        return sessions_pb2.KillSessionResponse()

    async def BackgroundSession(  # noqa: N802
        self, request: sessions_pb2.BackgroundSessionRequest, context: Context
    ) -> sessions_pb2.BackgroundSessionResponse:
        """Detach every client of a session."""
        count = await self.manager.background(_require_id(request.id))
        return sessions_pb2.BackgroundSessionResponse(detached_viewers=count)

    async def RestartSession(  # noqa: N802
        self, request: sessions_pb2.RestartSessionRequest, context: Context
    ) -> sessions_pb2.Session:
        """Start a stopped session with the current image."""
        return self._session(await self.manager.restart(_require_id(request.id)))

    async def WatchSessions(  # noqa: N802
        self, request: sessions_pb2.WatchSessionsRequest, context: Context
    ) -> AsyncIterator[sessions_pb2.SessionEvent]:
        """A snapshot (EXISTING..., SYNCED), then every change; ends if the client falls behind."""
        watcher = self.hub.watch()  # before the snapshot, so no change falls in between
        try:
            now = datetime.now(UTC)
            for view in await self.manager.list():
                yield session_event_to_proto(SessionEvent(
                    SessionEventKind.EXISTING, session_id=view.record.id,
                    session=view.session(self.agent_id), time=now))
            yield session_event_to_proto(SessionEvent(SessionEventKind.SYNCED, time=now))
            while True:
                event = await watcher.queue.get()
                if event is None:
                    raise UnavailableError("the agent is stopping: watch again once it is back")
                if watcher.fell_behind:
                    raise ResourceExhaustedError(
                        f"watch stream fell behind ({watcher.dropped} events dropped): watch again"
                    )
                change = session_event(event)
                if change is not None:
                    yield session_event_to_proto(change)
        finally:
            self.hub.unwatch(watcher)

    async def SessionLog(  # noqa: N802
        self, request: sessions_pb2.SessionLogRequest, context: Context
    ) -> AsyncIterator[sessions_pb2.SessionLogEntry]:
        """A session's event log (the last ``limit`` entries), then with ``follow`` every new one."""
        session_id = _require_id(request.id)
        if not request.follow:
            for entry in await self.manager.log_entries(session_id, request.limit):
                yield log_entry_to_proto(entry)
            return
        await self.manager.get(session_id)
        async for entry in self.manager.event_log.follow(session_id, request.limit):
            yield log_entry_to_proto(entry)

    async def PeekSession(  # noqa: N802
        self, request: sessions_pb2.PeekSessionRequest, context: Context
    ) -> sessions_pb2.PeekSessionResponse:
        """A running session's last screen, read from its tmux pane."""
        return screen_to_proto(await self.manager.peek(_require_id(request.id), request.lines))

    async def ReplySession(  # noqa: N802
        self, request: sessions_pb2.ReplySessionRequest, context: Context
    ) -> sessions_pb2.ReplySessionResponse:
        """Type one line into a running session and log it with its sender."""
        await self.manager.reply(_require_id(request.id), request.text, request.sender)
        return sessions_pb2.ReplySessionResponse()

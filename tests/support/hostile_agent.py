"""A compromised agent for shell-side security tests: real SSH server, real gRPC, hostile answers.

It is registered with the shell like any agent (its own host key, the shell's key
authorized) and serves the Sessions API through the production
:class:`common.ssh_server.SSHSocketServer` and :class:`common.grpc_server.UnixGrpcServer`.
What it says is what a compromised agent (or the container records behind it) could
say: the sessions given to it, verbatim, in Ping, ListSessions and WatchSessions.
Every other RPC is left unimplemented.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from convocate.v1 import sessions_pb2, sessions_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.grpc_server import Service, UnixGrpcServer
from common.registry import register_agent
from common.ssh_keys import read_private_key
from common.ssh_server import SSHServerSettings, SSHSocketServer
from tests.support.keys import make_peer_keys
from tests.support.net import free_port

__all__ = ["HostileAgent"]

_K = sessions_pb2.SessionEventKind


class _Sessions(sessions_pb2_grpc.SessionsServicer):
    def __init__(self, agent_id: str, sessions: list[sessions_pb2.Session]) -> None:
        self.agent_id, self.sessions = agent_id, sessions

    async def Ping(self, request: Any, context: Any) -> sessions_pb2.PingResponse:  # noqa: N802
        now = Timestamp()
        now.GetCurrentTime()
        return sessions_pb2.PingResponse(agent_id=self.agent_id, version="hostile", server_time=now,
                                         hostname=f"host-{self.agent_id}")

    async def ListSessions(self, request: Any, context: Any) -> sessions_pb2.ListSessionsResponse:  # noqa: N802
        return sessions_pb2.ListSessionsResponse(sessions=self.sessions, agent_id=self.agent_id)

    async def WatchSessions(  # noqa: N802
        self, request: Any, context: Any
    ) -> AsyncIterator[sessions_pb2.SessionEvent]:
        for s in self.sessions:
            yield sessions_pb2.SessionEvent(kind=_K.SESSION_EVENT_KIND_EXISTING, session=s, session_id=s.id)
        yield sessions_pb2.SessionEvent(kind=_K.SESSION_EVENT_KIND_SYNCED)
        await asyncio.Event().wait()  # then nothing changes, until the client goes


class HostileAgent:
    """One compromised agent on ``host``, registered as ``agent_id``; use ``async with``."""

    def __init__(self, root: Path, registry: Path, agent_id: str, host: str,
                 sessions: list[sessions_pb2.Session]) -> None:
        self.agent_id, self.host, self.port = agent_id, host, free_port(host)
        keys = make_peer_keys(root / agent_id / "keys", host, self.port, agent_id)
        socket = root / agent_id / "run" / "agent.sock"
        # The generated base answers UNIMPLEMENTED for every RPC not overridden here.
        self.servicer = _Sessions(agent_id, sessions)  # type: ignore[abstract]
        self.grpc = UnixGrpcServer(socket, [Service(
            "convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server, self.servicer)])
        self.ssh = SSHSocketServer(SSHServerSettings(
            host, self.port, keys.host_key, keys.authorized_keys, socket, banner="convocate-agent",
            keepalive_interval=1.0))
        register_agent(registry, agent_id, host, self.port, keys.client_key, read_private_key(keys.host_key))

    async def __aenter__(self) -> HostileAgent:
        await self.grpc.start()
        await self.ssh.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ssh.close()
        await asyncio.wait_for(self.ssh.wait_closed(), 10)
        await self.grpc.stop(grace=0)

"""`python -m tests.support.mini_agent`: a small stand-in agent process for shell-side tests.

It has the agent's real outside: the restricted SSH server, a gRPC server on a UNIX
socket, Sessions (Ping with the emitter's status link, CRUD, WatchSessions) and the
real :class:`agent.status_emitter.StatusEmitter` to the shell's status service. Inside
it keeps sessions in memory and in ``<state>/sessions.json`` (so a restart keeps them)
and runs no containers (``running`` is a flag). Prints ``ready`` once it serves; stops
on SIGTERM (sending ``agent.shutdown``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias

from convocate.v1 import sessions_pb2, sessions_pb2_grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from agent.events import AgentEvent, InboundLinkTracker
from agent.status_emitter import StatusEmitter
from common.errors import NotFoundError
from common.grpc_server import Service, UnixGrpcServer
from common.logging import configure_logging
from common.proto_convert import session_from_proto
from common.ssh_server import SSHServerSettings, SSHSocketServer
from tests.support.status_stack import fast_tunnel

__all__ = ["MiniSessions", "main"]

_K = sessions_pb2.SessionEventKind
_Kind: TypeAlias = sessions_pb2.SessionEventKind.ValueType
_TYPES: dict[_Kind, str] = {
    _K.SESSION_EVENT_KIND_CREATED: "session.created",
    _K.SESSION_EVENT_KIND_UPDATED: "session.updated",
    _K.SESSION_EVENT_KIND_DELETED: "session.deleted",
    _K.SESSION_EVENT_KIND_STARTED: "session.started",
    _K.SESSION_EVENT_KIND_STOPPED: "session.stopped",
}


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class MiniSessions(sessions_pb2_grpc.SessionsServicer):
    """In-memory sessions with the real API shape."""

    def __init__(self, agent_id: str, state: Path, emitter: StatusEmitter | None,
                 tracker: InboundLinkTracker) -> None:
        self.agent_id, self.state, self.emitter, self.tracker = agent_id, state, emitter, tracker
        self.file = state / "sessions.json"
        self.sessions: dict[str, sessions_pb2.Session] = {}
        if self.file.exists():
            for item in json.loads(self.file.read_text()):
                s = json_format.ParseDict(item, sessions_pb2.Session())
                self.sessions[s.id] = s
        self.watchers: set[asyncio.Queue[sessions_pb2.SessionEvent]] = set()

    def _change(self, kind: _Kind, s: sessions_pb2.Session) -> sessions_pb2.Session:
        if kind == _K.SESSION_EVENT_KIND_DELETED:
            self.sessions.pop(s.id, None)
        else:
            self.sessions[s.id] = s
        self.file.write_text(json.dumps([json_format.MessageToDict(x) for x in self.sessions.values()]))
        event = sessions_pb2.SessionEvent(kind=kind, session=s, session_id=s.id, time=_now())
        for q in list(self.watchers):
            q.put_nowait(event)
        if self.emitter is not None:
            self.emitter.publish(AgentEvent(_TYPES[kind], session_id=s.id, session=session_from_proto(s)))
        return s

    def _get(self, session_id: str) -> sessions_pb2.Session:
        if session_id not in self.sessions:
            raise NotFoundError(f'session "{session_id}" does not exist')
        s = sessions_pb2.Session()
        s.CopyFrom(self.sessions[session_id])
        return s

    async def Ping(self, request: sessions_pb2.PingRequest, context: Any) -> sessions_pb2.PingResponse:  # noqa: N802
        self.tracker.record_ping(request.client_id)
        reply = sessions_pb2.PingResponse(agent_id=self.agent_id, version="mini", server_time=_now(),
                                          hostname=f"host-{self.agent_id}")
        if self.emitter is not None:
            reply.status_link.CopyFrom(self.emitter.status_link())
        return reply

    async def ListSessions(self, request: Any, context: Any) -> sessions_pb2.ListSessionsResponse:  # noqa: N802
        sessions = list(self.sessions.values())
        return sessions_pb2.ListSessionsResponse(sessions=sessions, agent_id=self.agent_id)

    async def GetSession(self, request: Any, context: Any) -> sessions_pb2.Session:  # noqa: N802
        return self._get(request.id)

    async def CreateSession(self, request: Any, context: Any) -> sessions_pb2.Session:  # noqa: N802
        s = sessions_pb2.Session(id=str(uuid.uuid4()), name=request.name, port=max(request.port, 0),
                                 protocol=request.protocol or "tcp", dns_name=request.dns_name,
                                 agent_id=self.agent_id, created_at=_now(), last_accessed=_now(),
                                 running=request.start)
        return self._change(_K.SESSION_EVENT_KIND_CREATED, s)

    async def UpdateSession(self, request: Any, context: Any) -> sessions_pb2.Session:  # noqa: N802
        s = self._get(request.id)
        s.name, s.port, s.protocol = request.name, request.port, request.protocol
        s.dns_name = request.dns_name
        return self._change(_K.SESSION_EVENT_KIND_UPDATED, s)

    async def CloneSession(self, request: Any, context: Any) -> sessions_pb2.Session:  # noqa: N802
        self._get(request.source_id)
        s = sessions_pb2.Session(id=str(uuid.uuid4()), name=request.name, agent_id=self.agent_id,
                                 created_at=_now(), last_accessed=_now(), protocol="tcp")
        return self._change(_K.SESSION_EVENT_KIND_CREATED, s)

    async def DeleteSession(self, request: Any, context: Any) -> sessions_pb2.DeleteSessionResponse:  # noqa: N802
        self._change(_K.SESSION_EVENT_KIND_DELETED, self._get(request.id))
        return sessions_pb2.DeleteSessionResponse()

    async def KillSession(self, request: Any, context: Any) -> sessions_pb2.KillSessionResponse:  # noqa: N802
        s = self._get(request.id)
        s.running = False
        self._change(_K.SESSION_EVENT_KIND_STOPPED, s)
        return sessions_pb2.KillSessionResponse()

    async def BackgroundSession(self, request: Any, context: Any) -> sessions_pb2.BackgroundSessionResponse:  # noqa: N802
        self._get(request.id)
        return sessions_pb2.BackgroundSessionResponse(detached_viewers=0)

    async def RestartSession(self, request: Any, context: Any) -> sessions_pb2.Session:  # noqa: N802
        s = self._get(request.id)
        s.running = True
        s.last_accessed.CopyFrom(_now())
        return self._change(_K.SESSION_EVENT_KIND_STARTED, s)

    async def WatchSessions(  # noqa: N802
        self, request: Any, context: Any
    ) -> AsyncIterator[sessions_pb2.SessionEvent]:
        q: asyncio.Queue[sessions_pb2.SessionEvent] = asyncio.Queue()
        self.watchers.add(q)
        try:
            for s in list(self.sessions.values()):
                kind = _K.SESSION_EVENT_KIND_EXISTING
                yield sessions_pb2.SessionEvent(kind=kind, session=s, session_id=s.id)
            yield sessions_pb2.SessionEvent(kind=_K.SESSION_EVENT_KIND_SYNCED)
            while True:
                yield await q.get()
        finally:
            self.watchers.discard(q)


async def _serve(a: argparse.Namespace) -> None:
    state = Path(a.state)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tracker = InboundLinkTracker()
    emitter = None
    if a.status_port:
        emitter = StatusEmitter(
            a.agent_id, "mini", fast_tunnel(
                name="status", host=a.status_host, port=a.status_port,
                client_key=state / "agent_to_shell_ed25519_key", known_hosts=state / "status_known_hosts",
                local_socket=state / "run" / "status.sock"),
            heartbeat_interval=a.heartbeat, tracker=tracker, hostname=f"host-{a.agent_id}")
        await emitter.start()
    servicer = MiniSessions(a.agent_id, state, emitter, tracker)
    socket_path = state / "srv" / "agent.sock"
    services = [Service("convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server, servicer)]
    async with UnixGrpcServer(socket_path, services):
        settings = SSHServerSettings(a.host, a.port, state / "host_ed25519_key", state / "authorized_keys",
                                     socket_path, banner="convocate-agent", keepalive_interval=1.0)
        async with SSHSocketServer(settings):
            print("ready", flush=True)
            await stop.wait()
            if emitter is not None:
                await emitter.close()


def main() -> None:
    """Parse arguments and serve until SIGTERM."""
    p = argparse.ArgumentParser()
    p.add_argument("--agent-id", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--status-host", default="127.0.0.1")
    p.add_argument("--status-port", type=int, default=0)
    p.add_argument("--heartbeat", type=float, default=0.5)
    configure_logging("cli", level="WARNING", json=False)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    main()

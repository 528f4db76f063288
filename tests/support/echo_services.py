"""Small in-test servicers for transport tests: Sessions.Ping and an echoing Attach.

They stand in for the agent so the transport (SSH guard, tunnel, gRPC) is tested on
its own; the agent's own tests drive the real servicers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from convocate.v1 import attach_pb2, attach_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import NotFoundError
from common.grpc_server import Service

__all__ = ["EchoAttach", "PingOnlySessions", "echo_services"]


class PingOnlySessions(sessions_pb2_grpc.SessionsServicer):
    """Answers Ping; GetSession always raises the domain NotFoundError."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.pings = 0

    async def Ping(  # noqa: N802 - gRPC method name
        self, request: sessions_pb2.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sessions_pb2.PingResponse:
        self.pings += 1
        now = Timestamp()
        now.GetCurrentTime()
        return sessions_pb2.PingResponse(agent_id=self.agent_id, version="test", server_time=now)

    async def GetSession(  # noqa: N802 - gRPC method name
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sessions_pb2.Session:
        raise NotFoundError(f'session "{request.id}" does not exist')


class EchoAttach(attach_pb2_grpc.AttachServicer):
    """Echoes every input frame back as output (a bidi stream through the tunnel)."""

    async def Attach(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[attach_pb2.AttachRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[attach_pb2.AttachResponse]:
        async for req in request_iterator:
            kind = req.WhichOneof("frame")
            if kind == "input":
                yield attach_pb2.AttachResponse(output=req.input)
            elif kind == "detach":
                yield attach_pb2.AttachResponse(
                    end=attach_pb2.AttachEnd(reason=attach_pb2.END_REASON_DETACHED)
                )
                return


def echo_services(agent_id: str = "test-agent") -> list[Service]:
    """The Sessions (Ping) and Attach (echo) services as UnixGrpcServer wants them."""
    return [
        Service("convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server,
                PingOnlySessions(agent_id)),  # type: ignore[abstract]  # only Ping is served
        Service("convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server, EchoAttach()),
    ]

# ruff: noqa: ARG002  # gRPC fixes the servicer signatures; not every handler reads every argument
"""The Status gRPC servicer: agents publish, local consumers watch one shared view.

Handlers only translate between gRPC and :class:`shell.status.view.StatusView`; the
view keeps the state. Unknown event types are accepted (forward compatibility).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from convocate.v1 import status_pb2, status_pb2_grpc

from common.errors import InvalidArgumentError
from common.grpc_server import Service
from common.logging import get_logger
from shell.status.view import StatusView

__all__ = ["StatusServicer", "status_service"]

log = get_logger(__name__)


class StatusServicer(status_pb2_grpc.StatusServicer):
    """Serves Publish, Watch, GetView and ReportLink over one :class:`StatusView`."""

    def __init__(self, view: StatusView) -> None:
        self.view = view

    async def Publish(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[status_pb2.Event],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.PublishSummary:
        agent_id = ""
        received = 0
        error = ""
        last_type = ""
        try:
            async for event in request_iterator:
                last_type = event.type
                if not agent_id:
                    if not event.agent_id:
                        raise InvalidArgumentError("the first status event must name its agent_id")
                    agent_id = event.agent_id
                    self.view.stream_opened(agent_id)
                if not event.agent_id:
                    event.agent_id = agent_id
                received += 1
                self.view.apply_event(event)
        except asyncio.CancelledError:
            error = "the agent's connection was lost"
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            if agent_id:
                if not error and last_type != "agent.shutdown":
                    error = "it ended without agent.shutdown (agent crashed or connection lost)"
                self.view.stream_closed(agent_id, error)
        return status_pb2.PublishSummary(received=received)

    async def Watch(  # noqa: N802 - gRPC method name
        self, request: status_pb2.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[status_pb2.ViewUpdate]:
        watcher = self.view.subscribe()
        try:
            while True:
                yield await watcher.next()
        finally:
            self.view.unsubscribe(watcher)

    async def GetView(  # noqa: N802 - gRPC method name
        self, request: status_pb2.GetViewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> status_pb2.View:
        return self.view.snapshot()

    async def ReportLink(  # noqa: N802 - gRPC method name
        self, request: status_pb2.LinkReport, context: grpc.aio.ServicerContext[Any, Any]
    ) -> status_pb2.LinkReportAck:
        if not request.agent_id:
            raise InvalidArgumentError("a link report must name its agent_id")
        self.view.report_link(request)
        return status_pb2.LinkReportAck()


def status_service(view: StatusView) -> Service:
    """The Status service as :class:`common.grpc_server.UnixGrpcServer` wants it."""
    return Service("convocate.v1.Status", status_pb2_grpc.add_StatusServicer_to_server, StatusServicer(view))

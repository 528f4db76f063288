# ruff: noqa: ARG002  # gRPC fixes the servicer signatures; not every handler reads every argument
"""The Status gRPC servicers: agents publish, local consumers watch one shared view.

Two sockets, two servicers. :class:`PublishServicer` serves only Publish, on the
socket the SSH server forwards to: the agent is the one its SSH key names
(:class:`shell.status.identity.PublishGate`), and an event naming any other agent
ends the stream with PERMISSION_DENIED. :class:`LocalServicer` serves Watch, GetView,
ReportLink and AskAgents (:mod:`shell.status.ask`) on the local-only socket the console,
the link prober and ``convocate-host`` use; it refuses Publish (a local caller has no
agent key).

Handlers only translate between gRPC and :class:`shell.status.view.StatusView`; the
view keeps the state. Unknown event types are accepted (forward compatibility).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from convocate.v1 import status_pb2, status_pb2_grpc

from common.errors import FailedPreconditionError, InvalidArgumentError, PermissionDeniedError
from common.grpc_server import Service
from common.logging import get_logger
from common.registry import validate_agent_id
from shell.status.ask import AgentAsker
from shell.status.view import StatusView

__all__ = ["LocalServicer", "PublishServicer", "local_service", "publish_service"]

log = get_logger(__name__)


def _denied(message: str) -> list[Any]:
    """Refuse a call with PERMISSION_DENIED (typed as a list so a stream handler can use it)."""
    raise PermissionDeniedError(message)


class PublishServicer(status_pb2_grpc.StatusServicer):
    """Publish only, each stream bound to the agent its SSH key names (the SSH-reachable socket).

    Watch, GetView and ReportLink are refused here (PERMISSION_DENIED): an agent key
    reaches this socket and nothing else.

    Args:
        view: the shared view.
        identify: the agent behind a caller (its gRPC peer string), None if none.
    """

    def __init__(self, view: StatusView, identify: Callable[[str], str | None]) -> None:
        self.view = view
        self._identify = identify

    def _bound_agent(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The agent the caller's key names."""
        agent_id = self._identify(context.peer())
        if agent_id is None:
            raise PermissionDeniedError("Publish needs an agent's SSH key: this connection has none")
        return agent_id

    async def Publish(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[status_pb2.Event],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.PublishSummary:
        bound = self._bound_agent(context)
        agent_id = ""
        received = 0
        error = ""
        last_type = ""
        try:
            async for event in request_iterator:
                last_type = event.type
                if event.agent_id not in ("", bound):
                    # Logged here, rate-limited per agent (a plain raise would log every refusal).
                    self.view.refuse(bound, "event names another agent", named=event.agent_id[:64])
                    error = (f"this key belongs to agent {bound!r}: "
                             f"it may not publish as {event.agent_id[:64]!r}")
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, error)
                if not agent_id:
                    agent_id = bound
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
        for update in _denied("Watch is served to local clients on the shell host only"):
            yield update

    async def GetView(  # noqa: N802 - gRPC method name
        self, request: status_pb2.GetViewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> status_pb2.View:
        _denied("GetView is served to local clients on the shell host only")
        return status_pb2.View()

    async def ReportLink(  # noqa: N802 - gRPC method name
        self, request: status_pb2.LinkReport, context: grpc.aio.ServicerContext[Any, Any]
    ) -> status_pb2.LinkReportAck:
        _denied("ReportLink is served to local clients on the shell host only")
        return status_pb2.LinkReportAck()

    async def AskAgents(  # noqa: N802 - gRPC method name
        self, request: status_pb2.AskAgentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[status_pb2.AgentAnswer]:
        for answer in _denied("AskAgents is served to local clients on the shell host only"):
            yield answer


class LocalServicer(status_pb2_grpc.StatusServicer):
    """Watch, GetView, ReportLink and AskAgents for local clients (the local-only socket); no Publish.

    Args:
        view: the shared view.
        asker: answers AskAgents over the link prober's clients (None: the service probes
            no registry, and AskAgents fails with FAILED_PRECONDITION).
    """

    def __init__(self, view: StatusView, asker: AgentAsker | None = None) -> None:
        self.view = view
        self.asker = asker

    async def Publish(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[status_pb2.Event],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.PublishSummary:
        _denied("Publish is served to agents through the status SSH port only")
        return status_pb2.PublishSummary()

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
        validate_agent_id(request.agent_id)
        self.view.report_link(request)
        return status_pb2.LinkReportAck()

    async def AskAgents(  # noqa: N802 - gRPC method name
        self, request: status_pb2.AskAgentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[status_pb2.AgentAnswer]:
        if self.asker is None:
            raise FailedPreconditionError("this status service probes no agent registry: it has no tunnels")
        async for answer in self.asker.ask(request):
            yield answer


def publish_service(view: StatusView, identify: Callable[[str], str | None]) -> Service:
    """Publish, bound to the caller's agent, for the SSH-reachable socket."""
    return Service("convocate.v1.Status", status_pb2_grpc.add_StatusServicer_to_server,
                   PublishServicer(view, identify))


def local_service(view: StatusView, asker: AgentAsker | None = None) -> Service:
    """Watch, GetView, ReportLink and AskAgents for the local-only socket."""
    return Service("convocate.v1.Status", status_pb2_grpc.add_StatusServicer_to_server,
                   LocalServicer(view, asker))

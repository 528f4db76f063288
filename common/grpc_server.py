"""A grpc.aio server on a UNIX socket, with health, reflection and one error boundary.

:class:`ErrorInterceptor` is the one place where domain errors become gRPC status codes
(``common.errors``): a handler raises ``NotFoundError("session ... does not exist")``
and the client sees ``NOT_FOUND`` with that message. Anything unexpected is logged
with its traceback and sent as ``INTERNAL`` without internals.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.errors import ConvocateError, error_status
from common.grpc_options import SERVER_OPTIONS
from common.logging import bind_context, get_logger, unbind_context
from common.paths import check_socket_path, private_dir

__all__ = ["ErrorInterceptor", "Service", "UnixGrpcServer"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Service:
    """One servicer to register: ``add(servicer, server)`` and its full service name."""

    name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: BaseException, method: str) -> None:
    name, message = error_status(err, method)
    if isinstance(err, ConvocateError):
        log.info("rpc failed", method=method, code=name, error=message)
    else:
        log.error("rpc crashed", method=method, exc_info=err)
    await context.abort(grpc.StatusCode[name], message)


def _wrap_unary(fn: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        bind_context(rpc=method)
        try:
            return await fn(request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as e:
            await _abort(context, e, method)
        finally:
            unbind_context("rpc")
        return None

    return handler


def _wrap_stream(fn: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        bind_context(rpc=method)
        try:
            async for item in fn(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as e:
            await _abort(context, e, method)
        finally:
            unbind_context("rpc")

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Translate domain errors raised by any handler into status codes (one table)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        original = await continuation(handler_call_details)
        method = handler_call_details.method
        if original is None or method.startswith(("/grpc.health", "/grpc.reflection")):
            return original
        handler: Any = original
        kw: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(handler.unary_unary, method), **kw)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_wrap_unary(handler.stream_unary, method), **kw)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_wrap_stream(handler.unary_stream, method), **kw)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(_wrap_stream(handler.stream_stream, method), **kw)
        return original


class UnixGrpcServer:
    """A grpc.aio server listening only on ``socket_path`` (0600, in a 0700 directory).

    Serves the given services plus ``grpc.health.v1.Health`` and server reflection, so
    ``grpcurl -plaintext -unix <socket> list`` works (directly or through the tunnel).
    """

    def __init__(self, socket_path: Path, services: Iterable[Service],
                 max_receive: int | None = None) -> None:
        self.socket_path = check_socket_path(socket_path)
        self.services = list(services)
        self.max_receive = max_receive  # bytes per request message (default SERVER_OPTIONS')
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind the socket and start serving."""
        private_dir(self.socket_path.parent)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        options = list(SERVER_OPTIONS)
        if self.max_receive is not None:
            options = [o for o in options if o[0] != "grpc.max_receive_message_length"]
            options.append(("grpc.max_receive_message_length", self.max_receive))
        server = grpc.aio.server(options=options, interceptors=[ErrorInterceptor()])
        for svc in self.services:
            svc.add(svc.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [svc.name for svc in self.services]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
        old_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{self.socket_path}")
            await server.start()
        finally:
            os.umask(old_umask)
        self.socket_path.chmod(0o600)
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("grpc server listening", socket=str(self.socket_path), services=names)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Mark NOT_SERVING, stop with ``grace`` seconds for calls in flight, remove the socket."""
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def wait_for_termination(self) -> None:
        """Block until the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> UnixGrpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

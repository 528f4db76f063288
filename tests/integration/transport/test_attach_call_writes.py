"""AttachCall on a real gRPC server: writes from several tasks at once all arrive, in one call."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from convocate.v1 import attach_pb2, attach_pb2_grpc

from common.client.attach_call import AttachCall
from common.grpc_server import Service, UnixGrpcServer

KEYS = 200


class RecordingAttach(attach_pb2_grpc.AttachServicer):
    """Keeps every request of the stream; answers the detach frame with an end frame."""

    def __init__(self) -> None:
        self.inputs: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []

    async def Attach(  # noqa: N802 - gRPC method name
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[attach_pb2.AttachResponse]:
        async for req in request_iterator:
            kind = req.WhichOneof("frame")
            if kind == "input":
                self.inputs.append(req.input)
            elif kind == "window_change":
                self.sizes.append((req.window_change.rows, req.window_change.cols))
            elif kind == "detach":
                end = attach_pb2.AttachEnd(reason=attach_pb2.END_REASON_DETACHED)
                yield attach_pb2.AttachResponse(end=end)
                return


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for the socket."""
    with tempfile.TemporaryDirectory(prefix="cvw-") as d:
        yield Path(d)


async def test_concurrent_writes_all_arrive(sock_dir: Path) -> None:
    """Keys and resizes written from many tasks at once: none fails the call, every one arrives.

    grpc.aio allows one write in flight per call; without AttachCall's own ordering a second
    concurrent write fails the whole stream with "Internal error from Core".
    """
    servicer = RecordingAttach()
    server = UnixGrpcServer(sock_dir / "a.sock", [Service(
        "convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server, servicer)])
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock_dir / 'a.sock'}")
    call = AttachCall(channel, "agent-a")
    try:
        await call.start("s", rows=24, cols=80, term="xterm")
        writes = [call.send_input(f"k{i}".encode()) for i in range(KEYS)]
        writes += [call.resize(30 + i, 100) for i in range(10)]
        async with asyncio.timeout(30):
            await asyncio.gather(*writes)
            await call.detach()
            frames = [f async for f in call.frames()]
        assert sorted(servicer.inputs) == sorted(f"k{i}".encode() for i in range(KEYS))
        assert len(servicer.sizes) == 10
        assert frames, "the server's end frame did not arrive"
    finally:
        call.cancel()
        await channel.close()
        await server.stop(0)

"""StreamAttacher against a real Attach server: the start frame, and refusals before hand-off."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from convocate.v1 import attach_pb2, attach_pb2_grpc

from common.client.attach_call import AttachCall
from common.domain import AttachMode
from common.errors import UnavailableError
from common.grpc_server import Service, UnixGrpcServer
from shell.attach.relay import StreamAttacher
from tests.fakes.fake_router import FakeRouter, make_row


class RefusingAttach(attach_pb2_grpc.AttachServicer):
    """Records the start frame and refuses with an end frame, like an agent would."""

    def __init__(self) -> None:
        self.start: attach_pb2.AttachStart | None = None

    async def Attach(  # noqa: N802 - gRPC method name
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[attach_pb2.AttachResponse]:
        async for req in request_iterator:
            self.start = req.start
            yield attach_pb2.AttachResponse(end=attach_pb2.AttachEnd(
                reason=attach_pb2.END_REASON_ERROR, message='session "x" is not running'))
            return


class ChannelRouter(FakeRouter):
    """A fake router whose attach calls go over a real channel."""

    def __init__(self, channel: grpc.aio.Channel | None) -> None:
        super().__init__()
        self.channel = channel

    def attach_call(self, session_id: str) -> AttachCall:
        if self.channel is None:
            raise UnavailableError("agent agent-a is unreachable: connection refused")
        return AttachCall(self.channel, "agent-a")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for the socket."""
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        yield Path(d)


@contextlib.asynccontextmanager
async def serving(sock_dir: Path,
                  servicer: attach_pb2_grpc.AttachServicer) -> AsyncIterator[grpc.aio.Channel]:
    """A real gRPC server with ``servicer`` as the Attach service, and a channel to it."""
    server = UnixGrpcServer(sock_dir / "a.sock", [Service(
        "convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server, servicer)])
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{sock_dir / 'a.sock'}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


async def test_refusal_is_reported_without_taking_the_terminal(sock_dir: Path) -> None:
    """An end frame instead of started becomes an error outcome; the start frame carries the mode."""
    servicer = RefusingAttach()
    hooks: list[object] = []
    async with serving(sock_dir, servicer) as channel:
        attacher = StreamAttacher(ChannelRouter(channel), hooks.append, term="xterm")
        row = make_row("x", running=True)
        outcome = await attacher(row, AttachMode.OBSERVE, b"")
        assert outcome.reason == "error"
        assert "not running" in outcome.message
        assert servicer.start is not None
        assert servicer.start.session_id == row.id
        assert servicer.start.mode == attach_pb2.ATTACH_MODE_OBSERVE
        assert servicer.start.term == "xterm"
        assert hooks == []


async def test_unreachable_agent_is_a_lost_connection() -> None:
    """No channel to the agent: the outcome says so and nothing is suspended."""
    attacher = StreamAttacher(ChannelRouter(None), lambda hook: None)
    outcome = await attacher(make_row("x", running=True), AttachMode.DRIVE, b"")
    assert outcome.reason == "broken"
    assert "unreachable" in outcome.message


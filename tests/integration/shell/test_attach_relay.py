"""The attach relay between a real pty and a real gRPC Attach stream on a UNIX socket."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import tempfile
import termios
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from convocate.v1 import attach_pb2, attach_pb2_grpc

from common.client.attach_call import AttachCall
from common.domain import AttachMode, AttachStarted
from common.grpc_server import Service, UnixGrpcServer
from shell.attach.relay import AttachRelay
from shell.attach.terminal import RESET_SEQ
from tests.support.waiting import assert_eventually

DETACH_CHORD = b"\x02d"


class ScriptedAttach(attach_pb2_grpc.AttachServicer):
    """Echoes input upper-cased, records window changes, ends on Ctrl-B d like tmux."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.inputs = b""
        self.started = asyncio.Event()

    async def Attach(  # noqa: N802 - gRPC method name
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[attach_pb2.AttachResponse]:
        async for req in request_iterator:
            kind = req.WhichOneof("frame")
            if kind == "start":
                self.started.set()
                yield attach_pb2.AttachResponse(started=attach_pb2.AttachStarted(
                    session_id=req.start.session_id, mode=req.start.mode, viewer_count=1))
            elif kind == "input":
                self.inputs += req.input
                if DETACH_CHORD in self.inputs:
                    yield attach_pb2.AttachResponse(end=attach_pb2.AttachEnd(
                        reason=attach_pb2.END_REASON_DETACHED))
                    return
                yield attach_pb2.AttachResponse(output=req.input.upper())
            elif kind == "window_change":
                self.sizes.append((req.window_change.rows, req.window_change.cols))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for the socket."""
    with tempfile.TemporaryDirectory(prefix="cvr-") as d:
        yield Path(d)


class Terminal:
    """The far side of a pty: what a person types and sees; answers DA1 like xterm."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.set_size(30, 110)
        os.set_blocking(self.master, False)
        self.screen = b""

    def set_size(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def pump(self) -> bytes:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 65536):
                if b"\x1b[c" in chunk:
                    os.write(self.master, b"\x1b[?1;2c")
                self.screen += chunk
        return self.screen

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


async def _open(server_dir: Path, servicer: ScriptedAttach) -> tuple[UnixGrpcServer, grpc.aio.Channel,
                                                                     AttachCall]:
    server = UnixGrpcServer(server_dir / "a.sock",
                            [Service("convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server,
                                     servicer)])
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{server_dir / 'a.sock'}")
    call = AttachCall(channel, "a")
    await call.start("s1", rows=30, cols=110, term="")
    first = await call.read()
    assert isinstance(first, AttachStarted)
    return server, channel, call


async def test_relay_types_resizes_and_detaches(sock_dir: Path) -> None:
    """Typeahead and keys reach the stream, output reaches the screen, resize and Ctrl-B d work."""
    servicer = ScriptedAttach()
    server, channel, call = await _open(sock_dir, servicer)
    term = Terminal()
    before = termios.tcgetattr(term.slave)
    try:
        relay = AttachRelay(call, agent_id="a", mode=AttachMode.DRIVE, pending=b"ahead ",
                            in_fd=term.slave, out_fd=term.slave)
        task = asyncio.create_task(relay.run())
        os.write(term.master, b"hello")
        await assert_eventually(lambda: b"AHEAD HELLO" in term.pump(), timeout=5)
        assert termios.tcgetattr(term.slave)[3] & termios.ICANON == 0   # raw while attached
        term.set_size(40, 120)
        relay.resize()
        await assert_eventually(lambda: (40, 120) in servicer.sizes, timeout=5)
        os.write(term.master, DETACH_CHORD)
        def done() -> bool:
            term.pump()
            return task.done()
        await assert_eventually(done, timeout=5)
        outcome = task.result()
        assert outcome.reason == "detached"
        assert not outcome.broken
        assert RESET_SEQ in term.pump()
        assert termios.tcgetattr(term.slave) == before
    finally:
        term.close()
        await channel.close()
        await server.stop(0)


async def test_server_gone_restores_terminal_and_reports(sock_dir: Path) -> None:
    """When the agent goes away mid-attach the relay ends broken and the terminal is restored."""
    servicer = ScriptedAttach()
    server, channel, call = await _open(sock_dir, servicer)
    term = Terminal()
    before = termios.tcgetattr(term.slave)
    try:
        relay = AttachRelay(call, agent_id="agent-x", mode=AttachMode.DRIVE,
                            in_fd=term.slave, out_fd=term.slave)
        task = asyncio.create_task(relay.run())
        os.write(term.master, b"x")
        await assert_eventually(lambda: b"X" in term.pump(), timeout=5)
        await server.stop(0)
        def done() -> bool:
            term.pump()
            return task.done()
        await assert_eventually(done, timeout=10)
        outcome = task.result()
        assert outcome.broken
        assert termios.tcgetattr(term.slave) == before
        flags = fcntl.fcntl(term.slave, fcntl.F_GETFL)
        assert not flags & os.O_NONBLOCK
    finally:
        term.close()
        await channel.close()

"""Terminal clients of one session's tmux, one per path, all with the same small interface.

Each client has ``open()``, ``write(bytes)``, ``read_until(needle)`` and ``close()``, and a
``buf`` of output seen since it was last cleared, so the keystroke benchmark times every
path with the same loop. Closing always detaches the tmux client (Ctrl-B d or a detach
frame), so the next client finds the session as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
import time
from collections.abc import Callable

import grpc

from agent.docker_runtime import DockerRuntime, DockerTerminal
from common.attach_wire import CHANNEL_NAME
from common.client.attach_call import AttachCall, AttachHandle
from common.client.attach_channel_call import AttachChannelCall
from common.tunnel import Tunnel

__all__ = ["AttachClient", "ChannelClient", "DockerClient", "GrpcClient", "PtyClient", "TermClient"]

DETACH_KEYS = b"\x02d"   # tmux's Ctrl-B d


class TermClient:
    """Output collected into ``buf``; ``read_until`` waits (bounded) for a needle in it."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._more = asyncio.Event()
        self.ended = False

    def _feed(self, data: bytes) -> None:
        if data:
            self.buf += data
        else:
            self.ended = True
        self._more.set()

    async def read_until(self, needle: bytes, timeout: float = 10.0) -> None:
        """Wait until ``needle`` is in ``buf``."""
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            if self.ended:
                last = bytes(self.buf[-200:])
                raise RuntimeError(f"the stream ended before {needle!r}; last output {last!r}")
            self._more.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                last = bytes(self.buf[-200:])
                raise TimeoutError(f"{needle!r} not seen within {timeout:g} s; got {last!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), left)

    async def open(self) -> None:
        """Start the client."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send keys."""
        raise NotImplementedError

    async def close(self) -> None:
        """Detach and stop."""
        raise NotImplementedError


class PtyClient(TermClient):
    """A command run on a local pty sized 24x80 (``docker exec -it``, ``ssh -t``, the relay)."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__()
        self.argv = argv
        self.pid = -1
        self.fd = -1

    async def open(self) -> None:
        """Fork the command on a new pty (the child execs at once: no gRPC after fork)."""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvp(self.argv[0], self.argv)
        os.set_blocking(self.fd, False)
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.fd)
        self._feed(data)

    def write(self, data: bytes) -> None:
        """Type ``data`` on the pty."""
        os.write(self.fd, data)

    async def close(self) -> None:
        """Detach, then wait (bounded) for the command to exit; kill it if it does not."""
        with contextlib.suppress(OSError):
            self.write(DETACH_KEYS)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
            if pid:
                break
            await asyncio.sleep(0.02)
        else:
            os.kill(self.pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, self.pid, 0)
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


class DockerClient(TermClient):
    """The agent's own Docker call (a TTY exec of ``tmux attach``), made from this process."""

    def __init__(self, runtime: DockerRuntime, session_id: str, user: str) -> None:
        super().__init__()
        self.runtime, self.session_id, self.user = runtime, session_id, user
        self.term: DockerTerminal | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start the exec and its reader."""
        env = {"TERM": "xterm", "LC_ALL": "C.UTF-8", "HOME": "/home/claude"}
        self.term = await self.runtime.exec_terminal(
            self.session_id, ["tmux", "attach-session", "-t", "claude"], self.user, env)
        await self.term.resize(24, 80)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.term is not None
        while (chunk := await self.term.read()) is not None:
            self._feed(chunk)
        self._feed(b"")

    def write(self, data: bytes) -> None:
        """Send keys (the write is awaited by the next read's loop turn)."""
        assert self.term is not None
        asyncio.ensure_future(self.term.write(data))  # noqa: RUF006 - a write of a few bytes

    async def close(self) -> None:
        """Detach the tmux client, then close the stream."""
        assert self.term is not None
        await self.term.write(DETACH_KEYS)
        with contextlib.suppress(TimeoutError, RuntimeError):
            await self.read_until(b"[detached", 5)
        await self.term.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


class AttachClient(TermClient):
    """One attach stream (``call``: gRPC or the attach channel), made from this process."""

    def __init__(self, call: AttachHandle, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.call = call
        self._reader: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Start the stream and its reader."""
        await self.call.start(self.session_id, rows=24, cols=80, term="xterm")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while (frame := await self.call.read()) is not None:
            if isinstance(frame, bytes):
                self._feed(frame)
        self._feed(b"")

    def write(self, data: bytes) -> None:
        """Send keys as one input frame."""
        task = asyncio.ensure_future(self.call.send_input(data))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def close(self) -> None:
        """Detach (the agent ends the stream), then cancel the call."""
        with contextlib.suppress(Exception):
            await self.call.detach()
            if self._reader is not None:
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
        self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, *self._sends, return_exceptions=True)


class GrpcClient(AttachClient):
    """The gRPC Attach stream on ``channel`` (the agent's socket directly, or through a tunnel)."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel], session_id: str) -> None:
        super().__init__(AttachCall(channel(), "bench"), session_id)


class ChannelClient(AttachClient):
    """The stream as the console opens it (``AgentClient.attach``): on the tunnel's attach channel.

    ``fallback``: an agent that refuses the channel (a revision before it) is attached over
    gRPC, as the console would; without it, a refusal fails the path.
    """

    def __init__(self, tunnel: Tunnel, session_id: str, *, fallback: bool = False) -> None:
        def over_grpc() -> AttachHandle:
            return AttachCall(tunnel.channel, "bench")

        call: AttachHandle
        if fallback and tunnel.refuses(CHANNEL_NAME):
            call = over_grpc()
        else:
            call = AttachChannelCall(tunnel, "bench", fallback=over_grpc if fallback else None)
        super().__init__(call, session_id)

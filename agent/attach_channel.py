"""The agent's end of the attach channel: ``AttachService.Attach`` driven over one SSH channel.

Why: a keystroke's echo is mostly wake-ups, and the gRPC path adds a UNIX socket and
grpc core's poller thread between the SSH server and the servicer (``common.attach_wire``
says more). Here the SSH server (``common.ssh_server``, its ``attach_channel`` setting)
hands each channel opened to ``CHANNEL_NAME`` to :class:`AttachChannels`, which answers
it in-process with one :class:`AttachChannel`: frames decoded in asyncssh's callback go
straight to the servicer on the same event loop.

The session runs the very ``Attach`` generator the gRPC service runs (start-frame rules,
viewer registry, event-log records, output coalescing, end frames: one code path for
both transports) and writes each AttachResponse as a frame. What the servicer raises
becomes an ERROR frame carrying the status name and message the gRPC interceptor would
send (``common.errors.error_status``), so clients raise the same domain errors.

What a client sends is untrusted: a bad frame (unknown kind, over ``MAX_FRAME``, not an
AttachRequest) is logged with the reason, answered with an INVALID_ARGUMENT error frame,
and ends that channel; nothing else is affected.

Flow control both ways: requests are decoded into a small inbox only as it has room, and
past ``INBOX_HIGH`` the channel stops reading (the SSH window then holds the client back)
until the servicer has taken them; output waits while asyncssh's send buffer is over its
high-water mark (the client's window is full), so the viewer's own bound is what limits
the output held for a slow client. A closed channel (client gone, connection lost, agent
stopping) cancels the task and closes the generator: the viewer is released exactly as
with a cancelled gRPC call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import asyncssh
from convocate.v1 import attach_pb2
from google.protobuf.message import DecodeError

from agent.attach_service import AttachService
from common.attach_wire import MESSAGE, FrameError, FrameReader, encode, encode_error
from common.errors import ConvocateError, error_status
from common.logging import get_logger
from common.tasks import TaskSet

__all__ = ["INBOX_HIGH", "AttachChannel", "AttachChannels"]

log = get_logger(__name__)
METHOD = "/convocate.v1.Attach/Attach"     # the call this channel carries, named in errors
INBOX_HIGH = 64         # requests waiting for the servicer before the channel stops reading
_INBOX_LOW = 16         # ... and resumes
_REQUESTS = frozenset({MESSAGE})


class AttachChannels:
    """The SSH server's attach-channel handler: one :class:`AttachChannel` per channel.

    It owns the channels' tasks: :meth:`aclose` (after the SSH server closed) cancels any
    still running.
    """

    def __init__(self, service: AttachService) -> None:
        self.service = service
        self._tasks = TaskSet("attach-channels")

    def __call__(self, origin: str, on_close: Callable[[], None]) -> AttachChannel:
        """The session for one channel opened by ``origin`` (see ``common.ssh_server.ChannelHandler``)."""
        return AttachChannel(self.service, self._tasks, origin, on_close)

    async def aclose(self) -> None:
        """Cancel the tasks of channels still open, and wait for them."""
        await self._tasks.aclose()


class AttachChannel(asyncssh.SSHUNIXSession[bytes]):
    """One attach stream on one SSH channel (asyncssh calls the methods below)."""

    def __init__(self, service: AttachService, tasks: TaskSet, origin: str,
                 on_close: Callable[[], None]) -> None:
        self._service = service
        self._tasks = tasks
        self._origin = origin
        self._on_close: Callable[[], None] | None = on_close
        self._chan: asyncssh.SSHUNIXChannel[bytes] | None = None
        self._reader = FrameReader(_REQUESTS)
        self._inbox: asyncio.Queue[attach_pb2.AttachRequest | None] = asyncio.Queue()
        self._input_ended = False
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None

    # --- asyncssh's callbacks -------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHUNIXChannel[bytes]) -> None:
        self._chan = chan

    def session_started(self) -> None:
        try:
            self._task = self._tasks.create_task(self._serve(), name="attach-channel")
        except RuntimeError:        # the agent is stopping
            self._close()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:  # noqa: ARG002 - no extended data here
        if not self._input_ended:
            self._reader.feed(data)
            self._take_frames()

    def eof_received(self) -> bool:
        self._end_input()       # the client's half-close: the servicer treats it as a detach
        return True             # keep our side open for the end frame

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_input()
        self._writable.set()
        if self._task is not None:
            self._task.cancel()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
        log.info("attach channel closed", origin=self._origin, error=str(exc or ""))

    # --- the stream -----------------------------------------------------------------------
    async def _requests(self) -> AsyncIterator[attach_pb2.AttachRequest]:
        """The client's frames for the servicer, until its half-close or the channel's end."""
        while (req := await self._inbox.get()) is not None:
            if self._reading_paused and self._inbox.qsize() <= _INBOX_LOW:
                self._take_frames()         # what waits in the reader first
                if self._inbox.qsize() < INBOX_HIGH and self._chan is not None:
                    self._reading_paused = False
                    self._chan.resume_reading()
            yield req

    def _take_frames(self) -> None:
        """Decode the frames fed so far into the inbox while it has room; stop reading when it is full.

        Frames are decoded only as the inbox takes them, so what a fast client sends waits
        as raw bytes in the reader (bounded by the SSH window), not as decoded requests.
        """
        if self._input_ended:
            return
        try:
            while self._inbox.qsize() < INBOX_HIGH and (frame := self._reader.next_frame()) is not None:
                self._inbox.put_nowait(attach_pb2.AttachRequest.FromString(frame[1]))
        except FrameError as e:
            self._bad(str(e))
            return
        except DecodeError:
            self._bad("a frame that is not an AttachRequest")
            return
        if not self._reading_paused and self._inbox.qsize() >= INBOX_HIGH and self._chan is not None:
            self._reading_paused = True
            self._chan.pause_reading()

    async def _serve(self) -> None:
        log.info("attach channel opened", origin=self._origin)
        try:
            async with contextlib.aclosing(self._service.Attach(self._requests(), None)) as responses:
                async for resp in responses:
                    if not self._write(encode(MESSAGE, resp.SerializeToString())):
                        return          # the channel is closing: aclosing releases the viewer
                    if not self._writable.is_set():
                        await self._writable.wait()
        except ConvocateError as e:
            log.info("attach channel: call failed", origin=self._origin, code=e.status, error=str(e))
            self._write(encode_error(*error_status(e, METHOD)))
        except Exception as e:  # the servicer's bug: logged here, only its type goes to the client
            log.exception("attach channel: call crashed", origin=self._origin)
            self._write(encode_error(*error_status(e, METHOD)))
        finally:
            self._close()

    # --- helpers ----------------------------------------------------------------------------
    def _write(self, frame: bytes) -> bool:
        """Send one frame; False when the channel no longer sends."""
        chan = self._chan
        if chan is None or chan.is_closing():
            return False
        chan.write(frame)
        return True

    def _end_input(self) -> None:
        if not self._input_ended:
            self._input_ended = True
            self._inbox.put_nowait(None)

    def _bad(self, reason: str) -> None:
        """End the channel for a frame of this wire that the client got wrong."""
        log.warning("attach channel closed: bad frame from the client", origin=self._origin, reason=reason)
        self._end_input()
        self._write(encode_error("INVALID_ARGUMENT", f"bad attach frame: {reason}"))
        self._close()

    def _close(self) -> None:
        """Close the channel once what was written is sent (asyncssh flushes it first)."""
        if self._chan is not None and not self._chan.is_closing():
            self._chan.close()

"""One attach stream on the attach channel: :class:`AttachCall`'s interface without gRPC's hops.

Why: a keystroke's echo is mostly wake-ups, and the gRPC call adds a UNIX socket and
grpc core's poller thread at the console's end and at the agent's (``common.attach_wire``).
:class:`AttachChannelCall` opens an SSH channel to ``CHANNEL_NAME`` on the tunnel's
connection (:meth:`common.tunnel.Tunnel.open_channel`) and exchanges the same
``convocate.v1`` AttachRequest / AttachResponse messages, framed, in asyncssh's
callbacks on the caller's event loop: a key goes console loop -> asyncssh -> TCP -> the
agent's asyncssh -> the servicer, and its echo comes back the same way.

Same frames and errors as :class:`common.client.attach_call.AttachCall`: the agent's
ERROR frame becomes the domain error of its status (``common.errors.from_status``, the
table the gRPC client uses), a lost connection or a malformed frame
:class:`common.errors.UnavailableError`.

An agent that refuses the channel (one older than this wire) is attached over gRPC
instead: given a ``fallback``, :meth:`AttachChannelCall.start` hands the whole call to
it, and the tunnel remembers the refusal for its connection
(:meth:`common.tunnel.Tunnel.refuses`) so the next attach goes to gRPC at once.

Flow control: frames received wait in a queue; past ``_QUEUE_HIGH`` bytes the channel
stops reading (the SSH window then holds the agent back) until :meth:`read` has taken
them; a write waits while asyncssh's send buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import asyncssh
from convocate.v1 import attach_pb2
from google.protobuf.message import DecodeError

from common.attach_wire import CHANNEL_NAME, ERROR, MESSAGE, FrameError, FrameReader, decode_error, encode
from common.client.attach_call import AttachHandle
from common.domain import AttachFrame, AttachMode
from common.errors import ConvocateError, UnavailableError, from_status
from common.logging import get_logger
from common.proto_convert import attach_frame_from_proto, attach_mode_to_proto

__all__ = ["AttachChannelCall", "ChannelOpener"]

log = get_logger(__name__)
S = TypeVar("S", bound=asyncssh.SSHUNIXSession[bytes])
_RESPONSES = frozenset({MESSAGE, ERROR})
_QUEUE_HIGH = 1024 * 1024       # bytes received and not read before the channel stops reading
_QUEUE_LOW = 256 * 1024         # ... and resumes


class ChannelOpener(Protocol):
    """Opens an in-process SSH channel to the peer (:class:`common.tunnel.Tunnel`)."""

    async def open_channel(self, factory: Callable[[], S],
                           name: str) -> tuple[asyncssh.SSHUNIXChannel[bytes], S]:
        """The open channel to ``name`` and its session ``factory()``."""
        ...


class _Receiver(asyncssh.SSHUNIXSession[bytes]):
    """The channel's session: cuts the agent's frames out as they arrive, for ``AttachChannelCall.read``."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.chan: asyncssh.SSHUNIXChannel[bytes] | None = None
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.error: ConvocateError | None = None
        self.closed = False
        self.arrived = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self._reader = FrameReader(_RESPONSES)
        self._paused = False

    def connection_made(self, chan: asyncssh.SSHUNIXChannel[bytes]) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:  # noqa: ARG002 - no extended data here
        self._reader.feed(data)
        try:
            for kind, payload in self._reader.frames():
                if kind == MESSAGE:
                    self.queue.append(payload)
                    self.queued += len(payload)
                elif self.error is None:
                    status, message = decode_error(payload)
                    self.error = from_status(status, message, peer=self.peer)
        except FrameError as e:
            self.fail(f"agent {self.peer} sent a bad attach frame: {e}")
            return
        finally:
            self.arrived.set()
        if not self._paused and self.queued > _QUEUE_HIGH and self.chan is not None:
            self._paused = True
            self.chan.pause_reading()

    def eof_received(self) -> bool:
        return True             # the agent closes the channel after its last frame

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.error is None:
            self.error = UnavailableError(f"agent {self.peer} is unreachable: {exc}")
        self.arrived.set()
        self.writable.set()

    def take(self) -> bytes:
        """The oldest frame received (the queue is not empty)."""
        payload = self.queue.popleft()
        self.queued -= len(payload)
        if self._paused and self.queued <= _QUEUE_LOW and self.chan is not None:
            self._paused = False
            self.chan.resume_reading()
        return payload

    def fail(self, message: str) -> None:
        """End the stream for something the agent got wrong (the channel closes)."""
        log.warning("attach channel closed", agent=self.peer, reason=message)
        self.queue.clear()
        self.queued = 0
        if self.error is None:
            self.error = UnavailableError(message)
        if self.chan is not None:
            self.chan.close()


class AttachChannelCall:
    """One attach stream to ``peer`` (an agent id) on the channel ``opener`` opens.

    The channel opens on :meth:`start`; :meth:`cancel` is always safe. With a
    ``fallback`` (a gRPC :class:`~common.client.attach_call.AttachCall` factory), an agent
    that refuses the channel is attached over gRPC instead.
    """

    def __init__(self, opener: ChannelOpener, peer: str, client_id: str = "",
                 fallback: Callable[[], AttachHandle] | None = None) -> None:
        self.peer = peer
        self.client_id = client_id     # who attaches: named in the session's event log
        self._opener = opener
        self._fallback = fallback
        self._grpc: AttachHandle | None = None
        self._receiver: _Receiver | None = None
        self._cancelled = False

    @property
    def on_channel(self) -> bool:
        """True once started on the attach channel (False: not started, or on the gRPC fallback)."""
        return self._receiver is not None

    def _require(self) -> _Receiver:
        if self._receiver is None:
            raise RuntimeError("AttachChannelCall used before start()")
        return self._receiver

    async def _send(self, request: attach_pb2.AttachRequest) -> None:
        receiver = self._require()
        chan = receiver.chan
        if receiver.error is not None:
            raise receiver.error
        if chan is None or receiver.closed or chan.is_closing():
            raise UnavailableError(f"the attach stream to agent {self.peer} is closed")
        chan.write(encode(MESSAGE, request.SerializeToString()))
        if not receiver.writable.is_set():
            await receiver.writable.wait()

    async def start(self, session_id: str, *, rows: int, cols: int, term: str,
                    mode: AttachMode = AttachMode.DRIVE) -> None:
        """Open the channel (or the gRPC fallback) and send the start frame.

        Raises:
            UnavailableError: the agent is unreachable, or refused the channel with no fallback.
        """
        receiver = _Receiver(self.peer)
        try:
            chan, _ = await self._opener.open_channel(lambda: receiver, CHANNEL_NAME)
        except asyncssh.ChannelOpenError as e:
            if self._fallback is None:
                raise UnavailableError(f"agent {self.peer} refused the attach channel: {e.reason}") from None
            log.info("attach channel refused: attaching over gRPC", agent=self.peer, reason=e.reason)
            self._grpc = self._fallback()
            if self._cancelled:
                return
            await self._grpc.start(session_id, rows=rows, cols=cols, term=term, mode=mode)
            return
        self._receiver = receiver
        if self._cancelled:         # cancelled while the channel was opening
            chan.close()
            return
        await self._send(attach_pb2.AttachRequest(start=attach_pb2.AttachStart(
            session_id=session_id, rows=rows, cols=cols, term=term, mode=attach_mode_to_proto(mode),
            client_id=self.client_id)))

    async def send_input(self, data: bytes) -> None:
        """Keys for the session."""
        if self._grpc is not None:
            await self._grpc.send_input(data)
            return
        await self._send(attach_pb2.AttachRequest(input=data))

    async def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size."""
        if self._grpc is not None:
            await self._grpc.resize(rows, cols)
            return
        size = attach_pb2.WindowChange(rows=rows, cols=cols)
        await self._send(attach_pb2.AttachRequest(window_change=size))

    async def detach(self) -> None:
        """Ask the agent to end the stream (it answers with an end frame, DETACHED)."""
        if self._grpc is not None:
            await self._grpc.detach()
            return
        await self._send(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))

    async def done_writing(self) -> None:
        """Half-close the stream (the agent treats it as a detach)."""
        if self._grpc is not None:
            await self._grpc.done_writing()
            return
        chan = self._require().chan
        if chan is not None and not chan.is_closing():
            chan.write_eof()

    async def read(self) -> AttachFrame | None:
        """The next frame; None when the stream ended without one.

        Frames of a kind this client does not know are skipped.

        Raises:
            ConvocateError: the agent's error for the call (NotFoundError...), or
                UnavailableError when the connection was lost.
        """
        if self._grpc is not None:
            return await self._grpc.read()
        receiver = self._require()
        while True:
            if receiver.queue:
                payload = receiver.take()
                try:
                    resp = attach_pb2.AttachResponse.FromString(payload)
                except DecodeError:
                    receiver.fail(f"agent {self.peer} sent a frame that is not an AttachResponse")
                    continue
                frame = attach_frame_from_proto(resp)
                if frame is not None:
                    return frame
                continue
            if receiver.error is not None:
                raise receiver.error
            if receiver.closed:
                return None
            receiver.arrived.clear()
            await receiver.arrived.wait()

    async def frames(self) -> AsyncIterator[AttachFrame]:
        """Every frame until the stream ends."""
        while (frame := await self.read()) is not None:
            yield frame

    def cancel(self) -> None:
        """End the stream (safe at any time, also before :meth:`start`)."""
        self._cancelled = True
        if self._grpc is not None:
            self._grpc.cancel()
        elif self._receiver is not None and self._receiver.chan is not None:
            self._receiver.chan.close()

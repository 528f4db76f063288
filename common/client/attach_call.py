"""One Attach stream in domain terms: send keys, sizes and detach; read domain frames.

:class:`AttachCall` wraps the bidirectional ``convocate.v1.Attach`` call so its users
(the console's relay, the demo's smoke test, the benchmarks) see :mod:`common.domain`
frames and domain errors only. A failed call raises the matching
:class:`common.errors.ConvocateError` (``UnavailableError`` when the agent is
unreachable); a cancellation of the call by a closed channel is left to the caller,
which knows whether it asked for it.

:class:`AttachHandle` is that interface, which the attach channel's call
(:class:`common.client.attach_channel_call.AttachChannelCall`) offers too: users take
either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, TypeVar

import grpc
from convocate.v1 import attach_pb2, attach_pb2_grpc

from common.domain import AttachFrame, AttachMode
from common.errors import from_rpc_error
from common.proto_convert import attach_frame_from_proto, attach_mode_to_proto

__all__ = ["AttachCall", "AttachHandle"]

T = TypeVar("T")


class AttachHandle(Protocol):
    """One attach stream, whatever carries it: domain frames in and out, domain errors."""

    peer: str

    async def start(self, session_id: str, *, rows: int, cols: int, term: str,
                    mode: AttachMode = AttachMode.DRIVE) -> None:
        """Open the stream and send the start frame."""

    async def send_input(self, data: bytes) -> None:
        """Keys for the session."""

    async def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size."""

    async def detach(self) -> None:
        """Ask the agent to end the stream (it answers with an end frame, DETACHED)."""

    async def done_writing(self) -> None:
        """Half-close the stream (the agent treats it as a detach)."""

    async def read(self) -> AttachFrame | None:
        """The next frame; None when the stream ended without one."""

    def frames(self) -> AsyncIterator[AttachFrame]:
        """Every frame until the stream ends."""
        ...

    def cancel(self) -> None:
        """End the stream (safe at any time, also before :meth:`start`)."""


class AttachCall:
    """One Attach stream to ``peer`` (an agent id, used in error messages).

    The call opens lazily on :meth:`start`; :meth:`cancel` is always safe.
    """

    def __init__(self, channel: grpc.aio.Channel, peer: str, client_id: str = "") -> None:
        self.peer = peer
        self.client_id = client_id     # who attaches: named in the session's event log
        self._stub = attach_pb2_grpc.AttachStub(channel)
        self._call: grpc.aio.StreamStreamCall[attach_pb2.AttachRequest, attach_pb2.AttachResponse] | None
        self._call = None
        # grpc.aio takes one write at a time on a call: a second write while one is in flight
        # fails the call ("Internal error from Core"). Keys, a resize and a detach may come
        # from different tasks, so writes wait their turn (uncontended, this costs nothing).
        self._writing = asyncio.Lock()

    def _require(self) -> grpc.aio.StreamStreamCall[attach_pb2.AttachRequest, attach_pb2.AttachResponse]:
        if self._call is None:
            raise RuntimeError("AttachCall used before start()")
        return self._call

    async def _translate(self, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except grpc.RpcError as e:
            raise from_rpc_error(e, peer=self.peer) from None

    async def _write(self, request: attach_pb2.AttachRequest) -> None:
        async with self._writing:
            await self._translate(self._require().write(request))

    async def start(self, session_id: str, *, rows: int, cols: int, term: str,
                    mode: AttachMode = AttachMode.DRIVE) -> None:
        """Open the stream and send the start frame."""
        self._call = self._stub.Attach()
        await self._write(attach_pb2.AttachRequest(start=attach_pb2.AttachStart(
            session_id=session_id, rows=rows, cols=cols, term=term, mode=attach_mode_to_proto(mode),
            client_id=self.client_id)))

    async def send_input(self, data: bytes) -> None:
        """Keys for the session."""
        await self._write(attach_pb2.AttachRequest(input=data))

    async def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size."""
        size = attach_pb2.WindowChange(rows=rows, cols=cols)
        await self._write(attach_pb2.AttachRequest(window_change=size))

    async def detach(self) -> None:
        """Ask the agent to end the stream (it answers with an end frame, DETACHED)."""
        await self._write(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))

    async def done_writing(self) -> None:
        """Half-close the stream (the agent treats it as a detach)."""
        async with self._writing:
            await self._translate(self._require().done_writing())

    async def read(self) -> AttachFrame | None:
        """The next frame; None when the stream ended without one.

        Frames of a kind this client does not know are skipped.
        """
        call = self._require()
        while True:
            resp = await self._translate(call.read())
            if not isinstance(resp, attach_pb2.AttachResponse):   # grpc.aio.EOF
                return None
            frame = attach_frame_from_proto(resp)
            if frame is not None:
                return frame

    async def frames(self) -> AsyncIterator[AttachFrame]:
        """Every frame until the stream ends."""
        while (frame := await self.read()) is not None:
            yield frame

    def cancel(self) -> None:
        """End the call (safe at any time, also before :meth:`start`)."""
        if self._call is not None:
            self._call.cancel()

"""The ``convocate.v1.Attach`` servicer: one bidirectional stream per attached terminal.

The first frame must be a start frame. Then a task relays input, window changes and
the detach frame to the viewer, while the handler sends the viewer's output
(coalesced up to 64 KiB per message), size notices and finally the end frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from convocate.v1 import attach_pb2, attach_pb2_grpc

from agent.attach_manager import AttachManager
from agent.manager import SessionManager
from agent.viewers import EndReason, Mode, Viewer
from common.errors import ConvocateError, InvalidArgumentError
from common.logging import get_logger

__all__ = ["MAX_OUTPUT_BYTES", "AttachService"]

log = get_logger(__name__)
MAX_OUTPUT_BYTES = 64 * 1024
START_TIMEOUT = 30.0

_MODES = {
    attach_pb2.ATTACH_MODE_UNSPECIFIED: Mode.DRIVE,
    attach_pb2.ATTACH_MODE_DRIVE: Mode.DRIVE,
    attach_pb2.ATTACH_MODE_OBSERVE: Mode.OBSERVE,
    attach_pb2.ATTACH_MODE_TAKE_OVER: Mode.TAKE_OVER,
}
_MODE_TO_PROTO = {
    Mode.DRIVE: attach_pb2.ATTACH_MODE_DRIVE,
    Mode.OBSERVE: attach_pb2.ATTACH_MODE_OBSERVE,
    Mode.TAKE_OVER: attach_pb2.ATTACH_MODE_TAKE_OVER,
}
_REASONS = {
    EndReason.DETACHED: attach_pb2.END_REASON_DETACHED,
    EndReason.SESSION_ENDED: attach_pb2.END_REASON_SESSION_ENDED,
    EndReason.TAKEN_OVER: attach_pb2.END_REASON_TAKEN_OVER,
    EndReason.AGENT_SHUTDOWN: attach_pb2.END_REASON_AGENT_SHUTDOWN,
    EndReason.BACKGROUNDED: attach_pb2.END_REASON_BACKGROUNDED,
    EndReason.ERROR: attach_pb2.END_REASON_ERROR,
}


class AttachService(attach_pb2_grpc.AttachServicer):
    """Relays terminals to sessions' tmux through :class:`AttachManager`."""

    def __init__(self, manager: SessionManager, attach: AttachManager) -> None:
        self.manager = manager
        self.attach = attach

    async def Attach(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[attach_pb2.AttachRequest],
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 - gRPC signature
    ) -> AsyncIterator[attach_pb2.AttachResponse]:
        """Attach one terminal; see the module docstring for the frame order."""
        requests = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(requests), START_TIMEOUT)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise InvalidArgumentError(f"no start frame within {START_TIMEOUT:g} s") from None
        if first.WhichOneof("frame") != "start":
            raise InvalidArgumentError("the first attach frame must be a start frame")
        start = first.start
        if not start.session_id.strip():
            raise InvalidArgumentError("session_id is required")
        mode = _MODES.get(start.mode)
        if mode is None:
            raise InvalidArgumentError(f"unknown attach mode {start.mode}")
        await self.manager.require_running(start.session_id)
        viewer = await self.attach.open(start.session_id, mode, start.rows, start.cols, start.term)
        pump = asyncio.create_task(self._pump(requests, viewer), name=f"attach-in-{viewer.id}")
        try:
            yield attach_pb2.AttachResponse(started=attach_pb2.AttachStarted(
                session_id=start.session_id, mode=_MODE_TO_PROTO[mode],
                viewer_count=self.attach.registry.count(start.session_id),
            ))
            while (frame := await viewer.next_frame(MAX_OUTPUT_BYTES)) is not None:
                if isinstance(frame, bytes):
                    yield attach_pb2.AttachResponse(output=frame)
                else:
                    notice = attach_pb2.SizeNotice(rows=frame.rows, cols=frame.cols)
                    yield attach_pb2.AttachResponse(size=notice)
            reason = viewer.end_reason or EndReason.SESSION_ENDED
            log.info("attach ended", session=start.session_id, viewer=viewer.id, reason=reason.value)
            yield attach_pb2.AttachResponse(end=attach_pb2.AttachEnd(reason=_REASONS[reason],
                                                                     message=viewer.end_message))
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self.attach.release(viewer)

    async def _pump(self, requests: AsyncIterator[attach_pb2.AttachRequest], viewer: Viewer) -> None:
        """Client -> viewer: input, window changes, detach; the client's half-close detaches."""
        try:
            async for req in requests:
                kind = req.WhichOneof("frame")
                if kind == "input":
                    # Observers' keys go to tmux too: a read-only client ignores all but detach.
                    await viewer.terminal.write(req.input)
                elif kind == "window_change":
                    await self.attach.resize(viewer, req.window_change.rows, req.window_change.cols)
                elif kind == "detach":
                    break
            await self.attach.end(viewer, EndReason.DETACHED, "detached by the client")
        except (ConvocateError, grpc.RpcError) as e:
            log.info("attach input ended", viewer=viewer.id, error=str(e))
            await self.attach.end(viewer, EndReason.DETACHED, "the client went away")

"""The ``convocate.v1.Attach`` servicer: one bidirectional stream per attached terminal.

Protobuf stays here: modes and end reasons are converted by :mod:`common.proto_convert`.

The first frame must be a start frame. Then a task relays input, window changes and
the detach frame to the viewer, while the handler sends the viewer's output
(coalesced up to 64 KiB per message), size notices and finally the end frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
from convocate.v1 import attach_pb2, attach_pb2_grpc

from agent.attach_manager import AttachManager
from agent.manager import SessionManager
from agent.viewers import EndReason, Viewer
from common.errors import ConvocateError, InvalidArgumentError
from common.logging import get_logger
from common.proto_convert import attach_mode_from_proto, attach_mode_to_proto, end_reason_to_proto
from common.session_rules import printable
from common.tasks import cancel_and_wait

__all__ = ["MAX_OUTPUT_BYTES", "AttachService"]

log = get_logger(__name__)
MAX_OUTPUT_BYTES = 64 * 1024
START_TIMEOUT = 30.0


class AttachService(attach_pb2_grpc.AttachServicer):
    """Relays terminals to sessions' tmux through :class:`AttachManager`."""

    def __init__(self, manager: SessionManager, attach: AttachManager) -> None:
        self.manager = manager
        self.attach = attach

    async def Attach(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[attach_pb2.AttachRequest],
        context: grpc.aio.ServicerContext[Any, Any] | None,  # noqa: ARG002 - gRPC signature
    ) -> AsyncGenerator[attach_pb2.AttachResponse, None]:
        """Attach one terminal; see the module docstring for the frame order.

        The attach channel (``agent.attach_channel``) drives this same generator with no
        gRPC context: nothing here may depend on one.
        """
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
        mode = attach_mode_from_proto(start.mode)
        if mode is None:
            raise InvalidArgumentError(f"unknown attach mode {start.mode}")
        await self.manager.require_running(start.session_id)
        viewer = await self.attach.open(start.session_id, mode, start.rows, start.cols, start.term)
        who = printable(start.client_id.strip())[:200]
        self.manager.record_viewer(start.session_id, "attached", who,
                                   {"mode": mode.value, "viewer": viewer.id})
        pump = asyncio.create_task(self._pump(requests, viewer), name=f"attach-in-{viewer.id}")
        released = False

        async def release() -> None:
            nonlocal released
            released = True
            await cancel_and_wait([pump])
            self.attach.release(viewer)
            reason = viewer.end_reason or EndReason.SESSION_ENDED
            self.manager.record_viewer(start.session_id, "detached", who,
                                       {"mode": mode.value, "viewer": viewer.id, "reason": reason.value})

        try:
            yield attach_pb2.AttachResponse(started=attach_pb2.AttachStarted(
                session_id=start.session_id, mode=attach_mode_to_proto(mode),
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
            # The viewer is counted out (and its "detached" event published) before the client
            # reads the end frame: a Get or List right after it no longer counts this viewer.
            await release()
            yield attach_pb2.AttachResponse(end=attach_pb2.AttachEnd(reason=end_reason_to_proto(reason),
                                                                     message=viewer.end_message))
        finally:
            if not released:
                await release()

    async def _pump(self, requests: AsyncIterator[attach_pb2.AttachRequest], viewer: Viewer) -> None:
        """Client -> viewer: input, window changes, detach; the client's half-close detaches."""
        try:
            async for req in requests:
                kind = req.WhichOneof("frame")
                if kind == "input":
                    # Observers' keys go to tmux too: a read-only client ignores all but detach.
                    viewer.note_input()
                    await viewer.terminal.write(req.input)
                elif kind == "window_change":
                    viewer.note_input()
                    await self.attach.resize(viewer, req.window_change.rows, req.window_change.cols)
                elif kind == "detach":
                    break
            await self.attach.end(viewer, EndReason.DETACHED, "detached by the client")
        except (ConvocateError, grpc.RpcError) as e:
            log.info("attach input ended", viewer=viewer.id, error=str(e))
            await self.attach.end(viewer, EndReason.DETACHED, "the client went away")

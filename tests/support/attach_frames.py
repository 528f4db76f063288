"""Reads every domain frame of one started attach stream (gRPC or channel) for a test to wait on."""

from __future__ import annotations

import asyncio
import contextlib

from common.client.attach_call import AttachHandle
from common.domain import AttachEnded, AttachFrame, AttachStarted
from tests.support.attach_stream import visible_text
from tests.support.waiting import assert_eventually

__all__ = ["FrameCollector"]


class FrameCollector:
    """A task reads ``call``'s frames into :attr:`frames` until the stream ends or fails."""

    def __init__(self, call: AttachHandle) -> None:
        self.call = call
        self.frames: list[AttachFrame] = []
        self.output = b""
        self.error: BaseException | None = None
        self.ended_cleanly = False      # read() returned None
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            while (frame := await self.call.read()) is not None:
                self.frames.append(frame)
                if isinstance(frame, bytes):
                    self.output += frame
            self.ended_cleanly = True
        except Exception as e:  # the stream failed: kept for the test to assert on
            self.error = e

    @property
    def text(self) -> str:
        """Everything received so far, without escape sequences."""
        return visible_text(self.output)

    @property
    def done(self) -> bool:
        """True once the stream ended (a None read or an error)."""
        return self._task.done()

    async def wait_started(self, timeout: float = 15.0) -> AttachStarted:
        """The started frame (fails with the stream's error if it failed first)."""
        def started() -> bool:
            if self.error is not None:
                raise RuntimeError(f"attach failed: {self.error!r}")
            return any(isinstance(f, AttachStarted) for f in self.frames)

        await assert_eventually(started, timeout=timeout)
        return next(f for f in self.frames if isinstance(f, AttachStarted))

    async def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in the visible output."""
        def seen() -> bool:
            assert text in self.text, f"{text!r} not in {self.text[-300:]!r} (error: {self.error!r})"
            return True

        await assert_eventually(seen, timeout=timeout)

    async def wait_done(self, timeout: float = 15.0) -> None:
        """Wait until the stream is over."""
        await asyncio.wait([self._task], timeout=timeout)
        assert self._task.done(), "the attach stream is still open"

    async def wait_end(self, timeout: float = 15.0) -> AttachEnded:
        """The end frame, once the stream is over."""
        await self.wait_done(timeout)
        ends = [f for f in self.frames if isinstance(f, AttachEnded)]
        assert ends, f"no end frame (error: {self.error!r}); got {self.text[-300:]!r}"
        return ends[-1]

    async def close(self) -> None:
        """Cancel the stream and stop reading."""
        self.call.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

"""A scripted Attach client for tests: start, type, resize, detach, and read what came back."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from convocate.v1 import attach_pb2, attach_pb2_grpc

from tests.support.waiting import assert_eventually

__all__ = ["AttachStream", "visible_text"]

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>78]|\x1b\][^\x07]*\x07|\r")


def visible_text(raw: bytes) -> str:
    """``raw`` terminal output with escape sequences and carriage returns removed."""
    return _ESCAPES.sub(b"", raw).decode(errors="replace")


class AttachStream:
    """One Attach call driven by a test; a task collects every response frame."""

    def __init__(self, stub: attach_pb2_grpc.AttachAsyncStub, session_id: str, *, rows: int = 24,
                 cols: int = 80, mode: attach_pb2.AttachMode.ValueType = attach_pb2.ATTACH_MODE_DRIVE,
                 term: str = "xterm-256color") -> None:
        self._outbox: asyncio.Queue[attach_pb2.AttachRequest | None] = asyncio.Queue()
        self._outbox.put_nowait(attach_pb2.AttachRequest(start=attach_pb2.AttachStart(
            session_id=session_id, rows=rows, cols=cols, term=term, mode=mode)))
        self.call = stub.Attach(self._requests())
        self.output = b""
        self.frames: list[attach_pb2.AttachResponse] = []
        self.started: attach_pb2.AttachStarted | None = None
        self.end: attach_pb2.AttachEnd | None = None
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._collect())

    async def _requests(self) -> AsyncIterator[attach_pb2.AttachRequest]:
        while (req := await self._outbox.get()) is not None:
            yield req

    async def _collect(self) -> None:
        try:
            async for resp in self.call:
                self.frames.append(resp)
                kind = resp.WhichOneof("frame")
                if kind == "output":
                    self.output += resp.output
                elif kind == "started":
                    self.started = resp.started
                elif kind == "end":
                    self.end = resp.end
        except Exception as e:  # the call failed: kept for the test to assert on
            self.error = e

    @property
    def text(self) -> str:
        """Everything received so far, without escape sequences."""
        return visible_text(self.output)

    def type(self, data: bytes | str) -> None:
        """Send input bytes."""
        raw = data.encode() if isinstance(data, str) else data
        self._outbox.put_nowait(attach_pb2.AttachRequest(input=raw))

    def resize(self, rows: int, cols: int) -> None:
        """Send a window change."""
        self._outbox.put_nowait(attach_pb2.AttachRequest(
            window_change=attach_pb2.WindowChange(rows=rows, cols=cols)))

    def detach(self) -> None:
        """Send a detach frame."""
        self._outbox.put_nowait(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))

    async def wait_started(self, timeout: float = 15.0) -> attach_pb2.AttachStarted:
        """Wait for the started frame (or fail with the call's error)."""
        def check() -> bool:
            if self.error is not None:
                raise AssertionError(f"attach failed: {self.error}")
            return self.started is not None

        await assert_eventually(check, timeout=timeout)
        assert self.started is not None
        return self.started

    async def wait_for(self, text: str, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears in the visible output; return the output."""
        await assert_eventually(lambda: text in self.text, timeout=timeout)
        return self.text

    async def wait_stty_size(self, rows: int, cols: int, attempts: int = 20) -> None:
        """Ask ``stty size`` until the session's terminal says ``rows cols`` (bounded).

        tmux resizes the window to a client a moment after it attaches or resizes, so one
        answer can still be the old size.
        """
        want = f"{rows} {cols}"
        for _ in range(attempts):
            self.type("stty size\r")
            with contextlib.suppress(AssertionError):
                await self.wait_for(want, timeout=0.5)
                return
        raise AssertionError(f"stty size never printed {want}: {self.text[-300:]!r}")

    async def wait_closed(self, timeout: float = 15.0) -> None:
        """Wait until the call is over (an end frame, an error or a cancelled channel)."""
        await asyncio.wait([self._task], timeout=timeout)
        assert self._task.done(), "the attach call is still open"

    async def wait_end(self, timeout: float = 15.0) -> attach_pb2.AttachEnd:
        """Wait for the end frame."""
        await asyncio.wait([self._task], timeout=timeout)
        assert self.end is not None, f"no end frame (error: {self.error}); got {self.text[-300:]!r}"
        return self.end

    async def close(self) -> None:
        """Half-close and cancel the call."""
        self._outbox.put_nowait(None)
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, 5)

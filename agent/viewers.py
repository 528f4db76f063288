"""Viewers: one attached terminal each (a TTY exec of ``tmux attach``), and their registry.

Backpressure is per viewer: a reader task moves the exec's output into the viewer's
bounded queue; when that queue stays full for ``slow_timeout`` seconds the viewer is
cut off (its queue is emptied and it ends with ``ERROR``). Nothing a viewer does can
stall another viewer or the agent: every viewer has its own exec, queue and task.

Frames: what is queued goes out as one frame (up to 64 KiB). While output streams with
nobody typing (a build log, ``seq``), tmux writes a few hundred bytes at a time and each
would be a frame of its own, every one costing each process on the way its wake-ups;
there a frame waits ``linger`` (1 ms) for more output to share it. An echo of a key, or
anything within ``input_quiet`` of input, goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.runtime import TerminalExec
from common.domain import AttachMode, EndReason
from common.logging import get_logger
from common.tasks import cancel_and_wait

__all__ = ["OBSERVE_FLAGS", "TMUX_SESSION", "TMUX_WAIT", "TMUX_WAIT_STEPS", "VIEWER_TTY_FILE", "EndReason",
           "Mode", "Size", "Viewer", "ViewerRegistry"]

# How a viewer exec becomes a tmux client, whichever way it started (agent.attach_manager's
# own exec, or a shell started ahead by agent.viewer_prime):
TMUX_SESSION = "claude"                          # the session's tmux session
OBSERVE_FLAGS = "-f read-only,ignore-size"       # an observer: no keys, never sizes the window
# + viewer id: its tty, for the per-viewer detach (a path inside the session container)
VIEWER_TTY_FILE = "/tmp/.convocate-viewer-"  # noqa: S108 - in the container, not on the host
# A container started moments ago may not have its tmux session yet: its entrypoint first
# becomes the session user, then starts tmux (with the real CLI image, long enough for an
# operator's Enter right after the row shows to find none: "no sessions"). A viewer that
# may be that early runs this first: up to TMUX_WAIT_STEPS x 0.1 s for the session (no
# output), then tmux attach says what it finds. Shell builtins but for tmux and sleep.
TMUX_WAIT_STEPS = 80
TMUX_WAIT = (f"i=0; until tmux has-session -t {TMUX_SESSION} >/dev/null 2>&1; do "
             f'[ "$i" -ge {TMUX_WAIT_STEPS} ] && break; sleep 0.1; i=$((i + 1)); done\n')

log = get_logger(__name__)
_TAIL = 512


# The attach mode and end reason are domain types, shared with the shell.
Mode = AttachMode


@dataclass(frozen=True)
class Size:
    """A size notice: the session's terminal size as the agent applied it."""

    rows: int
    cols: int


Frame = bytes | Size
Classifier = Callable[[bytes], Awaitable[tuple[EndReason, str]]]


@dataclass(eq=False)
class Viewer:
    """One attached terminal: its exec, its bounded output queue and how it ended."""

    session_id: str
    mode: Mode
    terminal: TerminalExec
    buffer_chunks: int = 256
    slow_timeout: float = 10.0
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    end_reason: EndReason | None = None
    end_message: str = ""
    exited: bool = False               # the exec (tmux client) ended by itself
    queue: asyncio.Queue[Frame | None] = field(init=False)
    # Streaming: a frame that follows the previous one within ``linger_after`` s, with no
    # input for ``input_quiet`` s, waits ``linger`` s for more output to join it.
    linger: float = 0.001
    linger_after: float = 0.005
    input_quiet: float = 0.05
    _reader: asyncio.Task[None] | None = field(default=None, init=False)
    _last_frame: float = field(default=-math.inf, init=False)
    _last_input: float = field(default=-math.inf, init=False)
    _held: list[Frame | None] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.buffer_chunks)

    @property
    def read_only(self) -> bool:
        """Observers never type and never resize the session."""
        return self.mode is Mode.OBSERVE

    def finish(self, reason: EndReason, message: str = "") -> None:
        """Record why the viewer ends (the first reason wins)."""
        if self.end_reason is None:
            self.end_reason, self.end_message = reason, message

    def start_reader(self, classify: Classifier) -> None:
        """Start moving exec output into the queue; ``classify`` explains a plain EOF."""
        self._reader = asyncio.create_task(self._read_loop(classify), name=f"viewer-{self.id}")

    async def _read_loop(self, classify: Classifier) -> None:
        tail = b""
        try:
            while (chunk := await self.terminal.read()) is not None:
                tail = (tail + chunk[-_TAIL:])[-_TAIL:]   # copies at most 1 KiB per chunk
                if not self.queue.full():
                    # The common case, without wait_for's task and timer per chunk.
                    self.queue.put_nowait(chunk)
                    continue
                try:
                    await asyncio.wait_for(self.queue.put(chunk), self.slow_timeout)
                except TimeoutError:
                    self.finish(EndReason.ERROR, "viewer too slow: its output buffer stayed full")
                    log.warning("slow viewer cut off", session=self.session_id, viewer=self.id)
                    self._drain()
                    break
            else:
                self.exited = True
            if self.end_reason is None:
                reason, message = await classify(tail)
                self.finish(reason, message)
        except Exception as e:
            self.finish(EndReason.ERROR, f"attach relay failed: {e}")
            log.exception("viewer reader failed", session=self.session_id, viewer=self.id)
        finally:
            self._drain_if_full()
            self.queue.put_nowait(None)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def _drain_if_full(self) -> None:
        if self.queue.full():
            self._drain()
            if self.end_reason is None:
                self.finish(EndReason.ERROR, "viewer too slow")

    def note_input(self) -> None:
        """The client just typed or resized: its echo or redraw must not wait for company."""
        self._last_input = asyncio.get_running_loop().time()

    def notify_size(self, size: Size) -> None:
        """Queue a size notice (skipped when the viewer is too slow to take it)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(size)

    async def next_frame(self, max_bytes: int = 64 * 1024) -> Frame | None:
        """Wait for the next frame: output coalesced up to ``max_bytes``, or a size notice.

        Returns None once the stream has ended and everything queued was returned.
        """
        item = self._held.pop() if self._held else await self.queue.get()
        if item is None:
            self._held.append(None)  # stay ended for later calls
            return None
        if isinstance(item, Size):
            return item
        parts, size = [item], len(item)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if (size < max_bytes and now - self._last_frame < self.linger_after
                and now - self._last_input >= self.input_quiet):
            await asyncio.sleep(self.linger)    # streaming: let the reader queue what follows
        while size < max_bytes and not self.queue.empty():
            nxt = self.queue.get_nowait()
            if not isinstance(nxt, bytes):
                self._held.append(nxt)
                break
            parts.append(nxt)
            size += len(nxt)
        self._last_frame = loop.time()
        return b"".join(parts)

    async def close(self) -> None:
        """Close the exec stream and stop the reader task."""
        await self.terminal.close()
        if self._reader is not None:
            await cancel_and_wait([self._reader])
            self._reader = None


class ViewerRegistry:
    """The viewers of every session; calls ``on_change(session_id)`` when one comes or goes."""

    def __init__(self, on_change: Callable[[str, bool], None] | None = None) -> None:
        self._by_session: dict[str, set[Viewer]] = {}
        self._on_change = on_change

    def set_listener(self, on_change: Callable[[str, bool], None]) -> None:
        """Set the callback ``(session_id, attached)`` (one listener)."""
        self._on_change = on_change

    def add(self, viewer: Viewer) -> None:
        """Register ``viewer``."""
        self._by_session.setdefault(viewer.session_id, set()).add(viewer)
        if self._on_change is not None:
            self._on_change(viewer.session_id, True)

    def remove(self, viewer: Viewer) -> None:
        """Forget ``viewer`` (no-op if unknown)."""
        group = self._by_session.get(viewer.session_id)
        if group is None or viewer not in group:
            return
        group.discard(viewer)
        if not group:
            del self._by_session[viewer.session_id]
        if self._on_change is not None:
            self._on_change(viewer.session_id, False)

    def of(self, session_id: str) -> list[Viewer]:
        """The viewers of ``session_id``."""
        return list(self._by_session.get(session_id, ()))

    def count(self, session_id: str) -> int:
        """How many viewers ``session_id`` has."""
        return len(self._by_session.get(session_id, ()))

    def all(self) -> list[Viewer]:
        """Every viewer of every session."""
        return [v for group in self._by_session.values() for v in group]

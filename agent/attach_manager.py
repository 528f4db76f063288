"""Attaching terminals to a session's tmux: open, resize, detach, take over, background.

Each viewer is a TTY exec of ``tmux attach-session -t claude`` (read-only and
``ignore-size`` for observers, so they never resize the session). The exec first
writes its tty name to ``/tmp/.convocate-viewer-<id>`` in the container, so one viewer
can later be detached on its own (closing a Docker exec stream does not end the
process inside). tmux redraws the screen on attach and serves several viewers at once.
The first attach after an operator's start usually takes a viewer started ahead
(:mod:`agent.viewer_prime`), skipping the engine's exec start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from agent.runtime import ContainerRuntime, TerminalExec
from agent.viewer_prime import PrimeRequest, ViewerPrimes
from agent.viewers import (
    OBSERVE_FLAGS,
    TMUX_SESSION,
    TMUX_WAIT,
    TMUX_WAIT_STEPS,
    VIEWER_TTY_FILE,
    EndReason,
    Mode,
    Size,
    Viewer,
    ViewerRegistry,
)
from common.errors import ConvocateError, UnavailableError
from common.logging import get_logger
from common.tasks import TaskSet, cancel_and_wait

__all__ = ["ATTACH_EARLY_SCRIPT", "ATTACH_SCRIPT", "EARLY_WINDOW", "AttachManager"]

log = get_logger(__name__)
ATTACH_SCRIPT = f'tty > "{VIEWER_TTY_FILE}$1" 2>/dev/null; exec tmux attach-session -t {TMUX_SESSION} $2'
ATTACH_EARLY_SCRIPT = TMUX_WAIT + ATTACH_SCRIPT   # within EARLY_WINDOW of the container's start
EARLY_WINDOW = TMUX_WAIT_STEPS * 0.1 + 2.0   # s after a start in which the session's tmux may be missing
_DETACH_ONE = (
    f't=$(cat "{VIEWER_TTY_FILE}$1" 2>/dev/null); '
    f'[ -n "$t" ] && tmux detach-client -t "$t"; rm -f "{VIEWER_TTY_FILE}$1"'
)
_ENDED_MARKS = (b"[exited]", b"[server exited]", b"[lost server]", b"[terminated]")
_EXEC_TIMEOUT = 10.0
_STOP_LOOKS = 20             # an attach that ends unexplained: looks at its container, ...
_STOP_LOOK_INTERVAL = 0.1    # ... this far apart, before calling it an error


class AttachManager:
    """Opens and ends viewers of running sessions; owns its cleanup tasks."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        registry: ViewerRegistry,
        *,
        user: str,
        buffer_chunks: int = 256,
        slow_timeout: float = 10.0,
        prime_ttl: float = 0.0,
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        self.user = user
        self.buffer_chunks = buffer_chunks
        self.slow_timeout = slow_timeout
        self._tasks = TaskSet("attach")
        self.primes = ViewerPrimes(runtime, user, ttl=prime_ttl)
        self._started: dict[str, float] = {}   # session -> when its container started (monotonic)

    def started(self, session_id: str) -> None:
        """The session's container has just started: a viewer soon after may find no tmux yet."""
        self._started[session_id] = time.monotonic()

    def prime(self, session_id: str) -> None:
        """Start a viewer ahead for the session's next attach (see :mod:`agent.viewer_prime`)."""
        self.primes.prime(session_id)

    def unprime(self, session_id: str) -> None:
        """Drop the session's viewer started ahead (its container stopped)."""
        self.primes.discard(session_id)
        self._started.pop(session_id, None)

    def _early(self, session_id: str) -> bool:
        """True within EARLY_WINDOW of the session's start (then its viewers wait for its tmux)."""
        when = self._started.get(session_id)
        if when is not None and time.monotonic() - when < EARLY_WINDOW:
            return True
        self._started.pop(session_id, None)
        return False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.create_task(coro)

    async def _exec(self, session_id: str, argv: list[str]) -> None:
        result = await asyncio.wait_for(self.runtime.exec_run(session_id, argv, self.user), _EXEC_TIMEOUT)
        if result.exit_code not in (0, 1):  # 1: nothing to detach
            log.info("tmux command failed", session=session_id, code=result.exit_code,
                     output=result.output.strip()[:200])

    async def detach_all(self, session_id: str) -> None:
        """Detach every tmux client of the session (ours and any left from a crash).

        Raises:
            UnavailableError: the command could not run.
        """
        try:
            await self._exec(session_id, ["tmux", "detach-client", "-s", TMUX_SESSION])
        except TimeoutError:
            raise UnavailableError(f"failed to detach tmux clients of {session_id}: timed out") from None
        except ConvocateError as e:
            raise UnavailableError(f"failed to detach tmux clients: {e}") from None

    async def open(self, session_id: str, mode: Mode, rows: int, cols: int, term: str) -> Viewer:
        """Attach a new viewer (after detaching the others, for take-over).

        Raises:
            FailedPreconditionError: the session is not running.
            UnavailableError: the exec could not start.
        """
        if mode is Mode.TAKE_OVER:
            for other in self.registry.of(session_id):
                other.finish(EndReason.TAKEN_OVER, "another viewer took the session over")
            await self.detach_all(session_id)
        viewer_id = secrets.token_hex(6)
        rows, cols, term = rows or 24, cols or 80, term or "xterm-256color"
        terminal = await self.primes.take(session_id, PrimeRequest(viewer_id, rows, cols, mode, term))
        if terminal is None:
            terminal = await self._exec_viewer(session_id, viewer_id, mode, rows, cols, term)
        viewer = Viewer(session_id, mode, terminal, buffer_chunks=self.buffer_chunks,
                        slow_timeout=self.slow_timeout, id=viewer_id)
        viewer.start_reader(lambda tail: self._classify(session_id, tail))
        self.registry.add(viewer)
        if not viewer.read_only:
            self._broadcast(session_id, Size(rows, cols))
        return viewer

    async def _exec_viewer(self, session_id: str, viewer_id: str, mode: Mode, rows: int, cols: int,
                           term: str) -> TerminalExec:
        """A fresh viewer exec of ``tmux attach-session``, sized."""
        viewer_env = {"TERM": term, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/home/claude"}
        flags = OBSERVE_FLAGS if mode is Mode.OBSERVE else ""
        script = ATTACH_EARLY_SCRIPT if self._early(session_id) else ATTACH_SCRIPT
        terminal = await self.runtime.exec_terminal(
            session_id, ["/bin/sh", "-c", script, "sh", viewer_id, flags], self.user, viewer_env
        )
        # Engine 20.10 ignores the initial console size: resize right after the start.
        await terminal.resize(rows, cols)
        return terminal

    async def resize(self, viewer: Viewer, rows: int, cols: int) -> None:
        """Apply a window change: observers resize only their own view."""
        if rows <= 0 or cols <= 0:
            return
        await viewer.terminal.resize(rows, cols)
        if not viewer.read_only:
            self._broadcast(viewer.session_id, Size(rows, cols))

    def _broadcast(self, session_id: str, size: Size) -> None:
        for v in self.registry.of(session_id):
            v.notify_size(size)

    async def end(self, viewer: Viewer, reason: EndReason, message: str = "") -> None:
        """End one viewer: record the reason and detach its tmux client."""
        viewer.finish(reason, message)
        if viewer.exited:
            # Its tmux client is gone and its tty may already belong to a new viewer:
            # detaching by that tty would detach the new one.
            return
        try:
            await self._exec(viewer.session_id, ["/bin/sh", "-c", _DETACH_ONE, "sh", viewer.id])
        except (ConvocateError, TimeoutError) as e:
            log.debug("per-viewer detach failed; closing the stream", viewer=viewer.id, error=str(e))
            await viewer.terminal.close()

    def release(self, viewer: Viewer) -> None:
        """Forget a finished viewer and clean up in the background (safe when cancelled)."""
        self.registry.remove(viewer)
        self._spawn(self._release(viewer))

    async def _release(self, viewer: Viewer) -> None:
        if viewer.end_reason is None:  # the client went away without a detach frame
            await self.end(viewer, EndReason.DETACHED, "the client went away")
        await viewer.close()

    async def background(self, session_id: str) -> int:
        """Detach every client of the session; return how many of our viewers it ended."""
        viewers = self.registry.of(session_id)
        for v in viewers:
            v.finish(EndReason.BACKGROUNDED, "the session was sent to the background")
        await self.detach_all(session_id)
        return len(viewers)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """End every viewer with AGENT_SHUTDOWN and wait (bounded) for their streams to end."""
        viewers = self.registry.all()
        if viewers:
            ending = [asyncio.create_task(self.end(v, EndReason.AGENT_SHUTDOWN, "the agent is stopping"))
                      for v in viewers]
            _, late = await asyncio.wait(ending, timeout=timeout)
            await cancel_and_wait(late)  # a stream that did not end in time is not left running

    async def close(self) -> None:
        """End the viewers started ahead; wait for background cleanup (bounded), then cancel
        what is left."""
        await self.primes.close()
        await self._tasks.join(timeout=5)
        await self._tasks.aclose()

    async def _classify(self, session_id: str, tail: bytes) -> tuple[EndReason, str]:
        """Why did this viewer's exec end on its own?"""
        if any(mark in tail for mark in _ENDED_MARKS):
            return EndReason.SESSION_ENDED, "the session ended"
        if b"[detached" in tail:
            return EndReason.DETACHED, "detached"
        # tmux can exit a moment before its container does: look again for a while before
        # calling it an error (a busy host takes a few hundred ms to stop the container).
        for look in range(_STOP_LOOKS):
            if look:
                await asyncio.sleep(_STOP_LOOK_INTERVAL)
            info = None
            with contextlib.suppress(ConvocateError):
                info = await self.runtime.inspect(session_id)
            if info is None or not info.running:
                return EndReason.SESSION_ENDED, "the session's container stopped"
        last = tail.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        return EndReason.ERROR, f"tmux attach ended: {last[0][:200]}"


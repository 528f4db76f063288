"""Viewers started ahead: the first attach after a start skips the engine's exec start.

Starting a TTY exec is most of an attach's time (the engine starts a process inside the
container; Engine 20.10 answers a resize only once it runs). Right after an operator's
create or restart, when an attach is likely to follow, :class:`ViewerPrimes` starts one
TTY exec of :data:`PRIME_SCRIPT`: a shell that turns echo off, says
:data:`PRIME_MARK` and waits for one line (the mark has no newline: nothing of the
prime's own output is left for the viewer). It is not a tmux client: it never resizes the
session and shows nothing. The attach that takes it writes one line (viewer id, rows,
cols, mode, terminal type); the shell sets its terminal's size, records its tty for the
per-viewer detach (as :mod:`agent.attach_manager`'s own exec does) and becomes ``tmux
attach-session`` with the attach's terminal type, read-only and ``ignore-size`` for an
observer. The terminal type and size are the attach's own, so tmux queries and sizes
exactly as for a fresh exec.

At most :data:`MAX_LIVE` primes exist at a time: an operator creates a few sessions at
once, while a script that starts many (a drain, a migration) gets primes for the first
few only, not an exec per session.

Nothing is left behind: an unused prime gets an empty line after ``ttl`` seconds (the
shell exits), one of a session that stops is dropped, and the shell gives up by itself
after :data:`SCRIPT_TIMEOUT` seconds (an agent that died meanwhile). A prime that is not
ready, failed or cannot take the line is not used: the attach starts its own exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from agent.runtime import ContainerRuntime, TerminalExec
from agent.viewers import OBSERVE_FLAGS, TMUX_SESSION, TMUX_WAIT, VIEWER_TTY_FILE, Mode
from common.errors import ConvocateError
from common.logging import get_logger
from common.tasks import TaskSet, cancel_and_wait

__all__ = ["PRIME_MARK", "PRIME_SCRIPT", "SCRIPT_TIMEOUT", "PrimeRequest", "ViewerPrimes", "prime_line"]

log = get_logger(__name__)
PRIME_MARK = b"convocate-primed"
SCRIPT_TIMEOUT = 60          # s the shell waits for its line before it exits by itself
READY_TIMEOUT = 10.0         # s for the prime to say it is ready
MAX_READY_BYTES = 4096       # output before the mark (a shell's complaint) at most
MAX_LIVE = 4                 # primes at a time (starting or waiting), all sessions together
# $1 viewer id, $2 rows, $3 cols, $4 mode (drive/observe), $5 terminal type: checked by prime_line.
PRIME_SCRIPT = (
    # Ready after stty and the session's tmux found (TMUX_WAIT: one `tmux has-session` once it
    # runs): the tty's name is read while the shell waits, not after.
    # An image without a tool it needs ends it before the mark: the attach then starts its own.
    # The line is read by the shell itself: a command that reads it would have to be in the
    # terminal's foreground process group (GNU `timeout` puts its command in a group of its
    # own, where a read from the terminal stops it with SIGTTIN). A watchdog subshell ends the
    # shell after SCRIPT_TIMEOUT s (an agent that died) and is ended, with its sleep, once
    # the line came.
    "command -v tty >/dev/null && stty -echo || exit 1\n"
    # Ready only once the session's tmux is there: an attach right after the start waits here.
    + TMUX_WAIT +
    # Its stdio is not the terminal: a sleep left behind (the TERM came between the sleep's
    # start and `s=$!`) must not hold the terminal, and with it the viewer's stream, open.
    f"( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep {SCRIPT_TIMEOUT} & s=$!; wait $s && kill $$ ) "
    "</dev/null >/dev/null 2>&1 & w=$!\n"
    "printf " + PRIME_MARK.decode() + "; t=$(tty)\n"
    "IFS= read -r line || exit 0\n"
    "kill $w 2>/dev/null\n"
    "set -f; set -- $line; [ $# -eq 5 ] || exit 0\n"
    'stty echo rows "$2" cols "$3"\n'
    f"printf '%s\\n' \"$t\" > \"{VIEWER_TTY_FILE}$1\"\n"
    'export TERM="$5"\n'
    f'[ "$4" = observe ] && exec tmux attach-session -t {TMUX_SESSION} {OBSERVE_FLAGS}\n'
    f"exec tmux attach-session -t {TMUX_SESSION}\n"
)
_TERM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_VIEWER_ID = re.compile(r"[0-9a-f]{1,32}")
_MAX_SIDE = 10_000


@dataclass(frozen=True)
class PrimeRequest:
    """What an attach tells a primed shell: who it is, its size, its mode and terminal type."""

    viewer_id: str
    rows: int
    cols: int
    mode: Mode
    term: str


def prime_line(req: PrimeRequest) -> bytes | None:
    """The line for a primed shell, or None when ``req`` cannot be said in it safely.

    The shell splits the line into words: every field must be one word of known
    characters (a terminal type with a space, say, is left to a fresh exec, which takes it
    as an environment variable).
    """
    if not (_VIEWER_ID.fullmatch(req.viewer_id) and _TERM.fullmatch(req.term)):
        return None
    if not (0 < req.rows <= _MAX_SIDE and 0 < req.cols <= _MAX_SIDE):
        return None
    mode = "observe" if req.mode is Mode.OBSERVE else "drive"
    return f"{req.viewer_id} {req.rows} {req.cols} {mode} {req.term}\n".encode()


class ViewerPrimes:
    """At most one primed viewer exec per session, started ahead and taken by one attach.

    Args:
        runtime: where the execs run.
        user: the container user the viewers run as.
        ttl: seconds an unused prime is kept (0: never prime).
        max_live: at most this many primes at a time (a start beyond gets none).
    """

    def __init__(self, runtime: ContainerRuntime, user: str, *, ttl: float, max_live: int = MAX_LIVE) -> None:
        self.runtime = runtime
        self.user = user
        self.ttl = ttl
        self.max_live = max_live
        self._primes: dict[str, asyncio.Task[TerminalExec | None]] = {}
        self._tasks = TaskSet("viewer-primes")
        self.taken = 0        # attaches that used a prime (tests and logs)

    def prime(self, session_id: str) -> None:
        """Start a prime for ``session_id`` in the background (replacing an older one)."""
        if self.ttl <= 0:
            return
        self.discard(session_id)
        if len(self._primes) >= self.max_live:
            log.debug("viewer not primed: enough primes waiting", session=session_id, live=len(self._primes))
            return
        task = self._tasks.create_task(self._start(session_id), name=f"prime-{session_id[:8]}")
        self._primes[session_id] = task
        task.add_done_callback(lambda t: self._expire_later(session_id, t))

    async def _start(self, session_id: str) -> TerminalExec | None:
        env = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/home/claude"}
        try:
            terminal = await self.runtime.exec_terminal(session_id, ["/bin/sh", "-c", PRIME_SCRIPT],
                                                        self.user, env)
        except ConvocateError as e:
            log.info("viewer not primed", session=session_id, error=str(e))
            return None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                seen = b""
                while PRIME_MARK not in seen:
                    chunk = await terminal.read()
                    if chunk is None or len(seen) > MAX_READY_BYTES:
                        raise ConvocateError(f"the primed shell said {seen[-200:]!r}")
                    seen += chunk
        except (ConvocateError, TimeoutError) as e:
            log.info("viewer not primed", session=session_id, error=str(e) or "not ready in time")
            await terminal.close()
            return None
        except asyncio.CancelledError:
            await asyncio.shield(terminal.close())
            raise
        return terminal

    def ready(self, session_id: str) -> bool:
        """True if the session has a prime ready to be taken."""
        task = self._primes.get(session_id)
        return (task is not None and task.done() and not task.cancelled() and task.exception() is None
                and task.result() is not None)

    def _expire_later(self, session_id: str, task: asyncio.Task[TerminalExec | None]) -> None:
        if task.cancelled() or task.exception() is not None or task.result() is None:
            if self._primes.get(session_id) is task:
                del self._primes[session_id]
            return
        with contextlib.suppress(RuntimeError):   # the loop is closing: close() ends it
            asyncio.get_running_loop().call_later(self.ttl, self._expire, session_id, task)

    def _expire(self, session_id: str, task: asyncio.Task[TerminalExec | None]) -> None:
        if self._primes.get(session_id) is task:
            self.discard(session_id)

    def discard(self, session_id: str) -> None:
        """Drop the session's prime, if any (its shell is told to exit)."""
        task = self._primes.pop(session_id, None)
        if task is None:
            return
        with contextlib.suppress(RuntimeError):   # closed: close() ends it
            self._tasks.create_task(self._end(task), name=f"unprime-{session_id[:8]}")

    @staticmethod
    async def _end(task: asyncio.Task[TerminalExec | None]) -> None:
        if not task.done():
            await cancel_and_wait([task])
        if task.cancelled() or task.exception() is not None:
            return
        terminal = task.result()
        if terminal is not None:
            with contextlib.suppress(ConvocateError):
                await terminal.write(b"\n")       # an empty line: the shell exits
            await terminal.close()

    async def take(self, session_id: str, req: PrimeRequest,
                   wait: float = READY_TIMEOUT) -> TerminalExec | None:
        """The session's prime turned into ``req``'s viewer, or None (then start a fresh exec).

        A prime still starting is waited for (at most ``wait`` s): it is further along than
        a fresh exec would be.
        """
        line = prime_line(req)
        task = self._primes.get(session_id) if line is not None else None
        if task is None or line is None:
            return None
        del self._primes[session_id]
        try:
            terminal = await asyncio.wait_for(asyncio.shield(task), wait)
        except Exception as e:   # not ready in time, or failed: a fresh exec instead
            log.info("primed viewer not taken", session=session_id, error=str(e) or type(e).__name__)
            self._tasks.create_task(self._end(task), name=f"unprime-{session_id[:8]}")
            return None
        if terminal is None:
            return None
        try:
            await terminal.write(line)
        except ConvocateError as e:
            log.info("primed viewer not taken", session=session_id, error=str(e))
            await terminal.close()
            return None
        self.taken += 1
        return terminal

    async def close(self) -> None:
        """End every prime (bounded) and the background tasks."""
        for session_id in list(self._primes):
            self.discard(session_id)
        await self._tasks.join(timeout=5)
        await self._tasks.aclose()

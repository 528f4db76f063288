"""Attach: hand the terminal to a session and relay bytes over the Attach stream.

:class:`StreamAttacher` opens the stream and waits for the agent's ``started`` frame
while the table is still on screen (so a refusal is a dialog, not a flicker), then
suspends the app with ``in_terminal()`` and runs :class:`AttachRelay`:

1. raw mode with TCSANOW (typeahead survives), typeahead sent first;
2. stdin -> ``input`` frames (a bounded queue; the reader pauses when it is full),
   output frames -> stdout through a bounded non-blocking writer;
3. resizes arrive through :meth:`AttachRelay.resize` (the app's ``_on_resize``
   override) and become ``window_change`` frames; observers never resize;
4. Ctrl-B d is tmux's, inside the session: the agent then ends the stream with
   DETACHED; any other end, or a broken stream, ends the relay too;
5. clean-up: RESET_SEQ, a DA1 round-trip to drain stray replies, termios restored.

Every exception is caught and becomes an :class:`AttachOutcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from prompt_toolkit.application import in_terminal

from common.client.attach_call import AttachHandle
from common.domain import AttachEnded, AttachMode, AttachStarted, TerminalSize
from common.errors import ConvocateError
from common.logging import get_logger
from shell.attach.outcome import AttachOutcome, error_outcome, outcome_from_end
from shell.attach.terminal import (
    DA1_QUERY,
    RESET_SEQ,
    RawTerminal,
    TerminalWriter,
    drain_until_da1,
    terminal_size,
)
from shell.fleet.model import RouterAPI, SessionRow

__all__ = ["START_TIMEOUT", "AttachRelay", "StreamAttacher"]

START_TIMEOUT = 20.0
_QUEUE = 64
log = get_logger("shell.attach")
# What the sender sends: keys, a window change, or None for "detach".
_Out = bytes | TerminalSize | None


class AttachRelay:
    """Relays one started Attach call between the terminal fds and the stream."""

    def __init__(self, call: AttachHandle, *, agent_id: str, mode: AttachMode, pending: bytes = b"",
                 in_fd: int = 0, out_fd: int = 1, early_output: bytes = b"") -> None:
        self.call = call
        self.agent_id = agent_id
        self.mode = mode
        self.pending = pending
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.early_output = early_output
        self._sendq: asyncio.Queue[_Out] = asyncio.Queue(_QUEUE)
        self._reading = False
        self._resize_pending = False
        self._input_closed = False
        self.bytes_in = 0
        self.bytes_out = 0

    # -- input side ----------------------------------------------------------------
    def _pause_reader(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.in_fd)
            self._reading = False

    def _resume_reader(self) -> None:
        if not self._reading and not self._input_closed and not self._sendq.full():
            asyncio.get_running_loop().add_reader(self.in_fd, self._on_stdin)
            self._reading = True

    def _on_stdin(self) -> None:
        try:
            data = os.read(self.in_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:                    # the terminal went away: detach cleanly
            self._input_closed = True
            self._pause_reader()
            self._put(None)
            return
        self.bytes_in += len(data)
        self._put(data)

    def _put(self, req: _Out) -> None:
        self._sendq.put_nowait(req)
        if self._sendq.full():
            self._pause_reader()

    def resize(self) -> None:
        """Send the terminal's current size (called on SIGWINCH while attached)."""
        if self.mode is AttachMode.OBSERVE:
            return
        if self._sendq.full():
            self._resize_pending = True
            return
        rows, cols = terminal_size(self.out_fd)
        self._sendq.put_nowait(TerminalSize(rows, cols))

    async def _sender(self) -> None:
        while True:
            req = await self._sendq.get()
            if req is None:
                await self.call.detach()
            elif isinstance(req, TerminalSize):
                await self.call.resize(req.rows, req.cols)
            else:
                await self.call.send_input(req)
            if self._resize_pending and not self._sendq.full():
                self._resize_pending = False
                self.resize()
            self._resume_reader()

    # -- output side ---------------------------------------------------------------
    async def _receiver(self, writer: TerminalWriter) -> AttachOutcome:
        while True:
            frame = await self.call.read()
            if frame is None:
                return AttachOutcome("broken", "the stream ended without a reason", broken=True)
            if isinstance(frame, bytes):
                self.bytes_out += len(frame)
                writer.write(frame)
                if writer.failed is not None:
                    return AttachOutcome("error", f"cannot write to the terminal: {writer.failed}",
                                         broken=True)
                await writer.drain()
            elif isinstance(frame, AttachEnded):
                await self._finish_call()
                return outcome_from_end(frame)
            elif isinstance(frame, TerminalSize):
                log.debug("size notice", rows=frame.rows, cols=frame.cols)

    async def _finish_call(self) -> None:
        """Let the agent complete the call after its end frame (bounded).

        Cancelling right away would look like a vanished client to the agent, which then
        detaches "our" tmux client by its tty, a tty a new viewer may already reuse.
        """
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                while await self.call.read() is not None:
                    pass

    async def run(self) -> AttachOutcome:
        """Relay until the stream ends; the terminal is always restored."""
        outcome = AttachOutcome("broken", "the relay stopped", broken=True)
        with RawTerminal(self.in_fd) as raw:
            writer = TerminalWriter(self.out_fd)
            try:
                if self.early_output:
                    writer.write(self.early_output)
                if self.pending and self.mode is not AttachMode.OBSERVE:
                    self._put(self.pending)
                self.resize()          # the agent sizes from the start frame; this repeats it
                self._resume_reader()
                outcome = await self._pump(writer)
            finally:
                self._pause_reader()
                writer.write(RESET_SEQ)
                if raw.is_tty:
                    writer.write(DA1_QUERY)
                await writer.close()
                if raw.is_tty:
                    await drain_until_da1(self.in_fd)
        return outcome

    async def _pump(self, writer: TerminalWriter) -> AttachOutcome:
        sender = asyncio.create_task(self._sender())
        receiver = asyncio.create_task(self._receiver(writer))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not receiver.done():
                await asyncio.wait({receiver}, timeout=2.0)   # the send side ended: collect the end
            done = receiver if receiver.done() else sender
            if done.cancelled():
                # grpc.aio cancels a call whose channel is closed (the agent went away).
                return AttachOutcome("broken", f"the connection to agent {self.agent_id} was closed",
                                     broken=True)
            if done is receiver:
                return receiver.result()
            sender.result()            # raises the send side's error
            return AttachOutcome("broken", "the stream stopped taking input", broken=True)
        except ConvocateError as e:
            return error_outcome(e)
        except Exception as e:
            log.exception("attach relay failed")
            return AttachOutcome("error", f"attach relay failed: {e}", broken=True)
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)


class StreamAttacher:
    """The console's real :class:`shell.console.actions.Attacher`."""

    def __init__(self, router: RouterAPI, set_resize_hook: Callable[[Callable[[], None] | None], None],
                 *, in_fd: int = 0, out_fd: int = 1, term: str | None = None) -> None:
        self.router = router
        self.set_resize_hook = set_resize_hook
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.term = term or os.environ.get("TERM") or "xterm-256color"

    async def __call__(self, row: SessionRow, mode: AttachMode, pending: bytes) -> AttachOutcome:
        """Attach to ``row`` in ``mode``; ``pending`` is typeahead for the session."""
        call: AttachHandle | None = None
        try:
            call = self.router.attach_call(row.id)
            rows, cols = terminal_size(self.out_fd)
            log.info("attach", session=row.id, agent=row.agent_id, mode=str(mode), rows=rows, cols=cols)
            async with asyncio.timeout(START_TIMEOUT):
                await call.start(row.id, rows=rows, cols=cols, term=self.term, mode=mode)
                early = b""
                while True:
                    first = await call.read()
                    if first is None:
                        return AttachOutcome("broken", "the agent closed the stream", broken=True)
                    if isinstance(first, AttachStarted):
                        break
                    if isinstance(first, AttachEnded):
                        return outcome_from_end(first)
                    if isinstance(first, bytes):
                        early += first
            relay = AttachRelay(call, agent_id=row.agent_id, mode=mode, pending=pending,
                                in_fd=self.in_fd, out_fd=self.out_fd, early_output=early)
            async with in_terminal():
                self.set_resize_hook(relay.resize)
                try:
                    return await relay.run()
                finally:
                    self.set_resize_hook(None)
        except ConvocateError as e:
            return error_outcome(e)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise                  # we are being cancelled (the console is closing)
            return AttachOutcome("broken", f"the connection to agent {row.agent_id} was closed",
                                 broken=True)
        except TimeoutError:
            return AttachOutcome("error", f"agent {row.agent_id} did not start the attach within "
                                 f"{START_TIMEOUT:.0f} s", broken=True)
        except Exception as e:
            log.exception("attach failed", session=row.id)
            return AttachOutcome("error", f"attach failed: {e}", broken=True)
        finally:
            if call is not None:
                with contextlib.suppress(Exception):
                    call.cancel()

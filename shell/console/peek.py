"""Peek and reply without attaching: a pane over the table showing a session's last screen.

``P`` opens a :class:`PeekPane` on the selected session. While it is open, a background
task owned by the application (:class:`Peeker`) reads the screen through the router at
most once per :data:`PEEK_INTERVAL` seconds (one call in flight at a time, each bounded
by :data:`PEEK_TIMEOUT`) and stops when the pane closes. The pane is read-only: the
agent reads the screen from tmux without attaching, so the session is never resized
and an attached viewer is not disturbed. The one-line reply field sends its text as
keystrokes (Enter included) through the router's Reply call. Errors show in the pane
and in the status line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prompt_toolkit.formatted_text import StyleAndTextTuples

from common.domain import Screen
from common.errors import ConvocateError
from common.logging import get_logger
from shell.console.dialogs import Dialog
from shell.console.forms import TextField
from shell.console.state import ConsoleState
from shell.fleet.model import SessionRow

__all__ = ["MAX_REPLY", "PEEK_INTERVAL", "PEEK_TIMEOUT", "PeekPane", "Peeker"]

PEEK_INTERVAL = 1.0     # seconds between screen reads while the pane is open
PEEK_TIMEOUT = 5.0      # one read or reply, at most
MAX_REPLY = 512         # characters of one reply
_CHROME = 8             # rows of the screen the pane leaves free (title, status line, menu...)
log = get_logger("shell.console.peek")
Start = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class PeekPane(Dialog):
    """The pane: the screen's last lines, the reply field; Enter sends, Esc closes."""

    def __init__(self, row: SessionRow, on_done: Callable[[str], None]) -> None:
        super().__init__(f' Peek: "{row.name}" on {row.agent_id} (read-only) ', "Enter=Send reply  Esc=Close",
                         on_done)
        self.row = row
        self.screen: Screen | None = None
        self.reply = TextField("Reply:", "", MAX_REPLY, 40)
        self.columns, self.rows = 80, 24
        self.reads = 0           # screen reads that answered (tests, the title)

    def fit(self, columns: int, rows: int) -> None:
        """Fill the screen but for the chrome around it."""
        self.columns, self.rows = columns, rows
        self.width = max(20, columns - 2)
        self.reply.width = max(10, self.width - 14)

    def body(self) -> list[StyleAndTextTuples]:
        """The bottom of the session's screen (blank lines at its end dropped), then the reply field."""
        room = max(1, self.rows - _CHROME - (3 if self.error else 0))
        if self.screen is None:
            lines = ["(reading the screen...)"]
        else:
            lines = self.screen.text.split("\n")
            while lines and not lines[-1].strip():
                lines.pop()
            lines = lines[-room:] or ["(the screen is empty)"]
        out: list[StyleAndTextTuples] = [[("class:peek.screen", line)] for line in lines]
        out += [[], [("class:dialog.label", "Reply: "), *self.reply.render(focused=True)]]
        return out

    def handle(self, key: str) -> None:
        """Typing edits the reply; Enter sends it; Esc closes."""
        if key == "escape":
            self.on_done("close")
        elif key == "enter":
            if self.reply.value.strip():
                self.on_done("reply")
        else:
            self.reply.key(key)


class Peeker:
    """Opens the pane for a session, refreshes it in the background, sends replies."""

    def __init__(self, state: ConsoleState, start: Start) -> None:
        self.state = state
        self.start = start
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def open(self, row: SessionRow) -> PeekPane:
        """Show the pane for ``row`` and start refreshing it."""
        def done(outcome: str) -> None:
            if outcome == "reply":
                self.send(pane, pane.reply.value)
            else:
                self.close(pane)

        pane = PeekPane(row, done)
        self.state.open(pane)
        self._wake = asyncio.Event()
        self.task = self.start(self._refresh(pane))
        return pane

    def close(self, pane: PeekPane) -> None:
        """Close the pane and stop its refresh task."""
        self.state.close(pane)
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def _open(self, pane: PeekPane) -> bool:
        return pane in self.state.dialogs

    def _error(self, pane: PeekPane, what: str, error: str) -> None:
        pane.error = f"{what}: {error}"
        self.state.message = f'{what} "{pane.row.name}": {error}'
        self.state.invalidate()

    async def _refresh(self, pane: PeekPane) -> None:
        """Read the screen while the pane is open, at most once per PEEK_INTERVAL."""
        while self._open(pane):
            began = time.monotonic()
            try:
                async with asyncio.timeout(PEEK_TIMEOUT):
                    screen = await self.state.router.peek(pane.row.id)
            except ConvocateError as e:
                self._error(pane, "peek", str(e))
            except TimeoutError:
                self._error(pane, "peek", f"no answer within {PEEK_TIMEOUT:.0f} s")
            except Exception as e:   # an escaping error would block the console on "Press ENTER"
                log.exception("peek failed", session=pane.row.id)
                self._error(pane, "peek", str(e))
            else:
                pane.screen, pane.error = screen, ""
                pane.reads += 1
                self.state.invalidate()
            rest = PEEK_INTERVAL - (time.monotonic() - began)
            if rest > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(rest):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def send(self, pane: PeekPane, text: str) -> None:
        """Send the reply in the background; the pane stays open and refreshes at once."""
        row = pane.row

        async def run() -> None:
            try:
                async with asyncio.timeout(PEEK_TIMEOUT):
                    await self.state.router.reply(row.id, text)
            except ConvocateError as e:
                self._error(pane, "reply to", str(e))
            except TimeoutError:
                self._error(pane, "reply to", f"no answer within {PEEK_TIMEOUT:.0f} s")
            except Exception as e:
                log.exception("reply failed", session=row.id)
                self._error(pane, "reply to", str(e))
            else:
                if pane.reply.value == text:
                    pane.reply.value = ""
                pane.error = ""
                self.state.message = f'Sent reply to "{row.name}"'
                self._wake.set()
                self.state.invalidate()

        self.start(run())

"""The operation runner the controllers share: background operations, their errors, notices.

Handlers never await: an operation runs as a background task (``spawn``) while the
dialog shows a busy line and the title bar a busy marker; its error is shown in the
dialog that asked for it (or in an error notice when that dialog is gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from common.domain import AttachMode
from common.errors import ConvocateError
from common.logging import get_logger
from shell.attach.outcome import AttachOutcome
from shell.console.dialogs import Dialog, NoticeDialog
from shell.console.state import ConsoleState
from shell.fleet.model import SessionRow

__all__ = ["OP_TIMEOUT", "Attacher", "Operations", "Spawn", "short_name"]

OP_TIMEOUT = 90.0
T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
log = get_logger(__name__)


class Attacher(Protocol):
    """Hands the terminal to a session until it detaches or the stream ends."""

    async def __call__(self, row: SessionRow, mode: AttachMode, pending: bytes) -> AttachOutcome: ...


def short_name(text: str, n: int = 30) -> str:
    """``text`` cut to ``n`` characters with ``...`` (names in dialog texts)."""
    return text if len(text) <= n else text[: n - 3] + "..."


class Operations:
    """Runs the console's operations in the background and shows how they ended."""

    def __init__(self, state: ConsoleState, spawn: Spawn) -> None:
        self.state = state
        self.spawn = spawn

    def notice(self, title: str, *lines: str, warning: bool = False, **kw: Any) -> NoticeDialog:
        """A notice dialog that closes itself."""
        dialog = NoticeDialog(title, lines, warning=warning, **kw)
        dialog.on_done = lambda _outcome: self.state.close(dialog)
        return dialog

    def fail(self, dialog: Dialog | None, message: str) -> None:
        """Show ``message`` in ``dialog`` if it is still open, else in an error notice."""
        if dialog is not None and dialog in self.state.dialogs:
            dialog.fail(message)
            self.state.invalidate()
        else:
            self.state.open(self.notice(" Error ", *[message[:200]], warning=True))

    def run_op(self, label: str, op: Callable[[], Awaitable[T]], on_ok: Callable[[T], None],
               dialog: Dialog | None = None) -> None:
        """Run ``op`` in the background; ``on_ok(result)`` or the error in ``dialog``."""
        token = self.state.begin_busy(label)
        if dialog is not None:
            dialog.busy, dialog.error = f"{label}...  (Esc: continue in the background)", ""

        async def runner() -> None:
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    result = await op()
            except ConvocateError as e:
                self.fail(dialog, str(e))
            except TimeoutError:
                self.fail(dialog, f"{label}: no answer within {OP_TIMEOUT:.0f} s")
            except Exception as e:
                log.exception("operation failed", op=label)
                self.fail(dialog, f"{label} failed: {e}")
            else:
                if dialog is not None:
                    dialog.busy = ""
                on_ok(result)
            finally:
                self.state.end_busy(token)

        self.spawn(runner())

    def session(self) -> SessionRow | None:
        """The selected row when it is a real session (not an unreachable agent's placeholder)."""
        row = self.state.current()
        return None if row is None or row.placeholder else row

    def not_running(self, row: SessionRow) -> NoticeDialog:
        """The "Not Running" dialog; R in it restarts the session."""
        name = short_name(row.name)
        dialog = NoticeDialog(" Not Running ", [f'Session "{name}" is not running.',
                                                 "Press R to restart it, any other key to close."],
                              warning=True, extra_keys=("r",))

        def done(outcome: str) -> None:
            if outcome != "r":
                self.state.close(dialog)
                return
            self.run_op("restarting", lambda: self.state.router.restart(row.id),
                        lambda _r: self.state.close(dialog), dialog)

        dialog.on_done = done
        return dialog

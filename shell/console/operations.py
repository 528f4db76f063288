"""The controller's base: spawning operations, showing their errors, common dialogs.

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
from shell.console.peek import Peeker
from shell.console.state import ConsoleState
from shell.fleet.model import SessionRow

__all__ = ["OP_TIMEOUT", "Attacher", "ConsoleBase", "Spawn", "short_name"]

OP_TIMEOUT = 90.0
T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
log = get_logger("shell.console.actions")


class Attacher(Protocol):
    """Hands the terminal to a session until it detaches or the stream ends."""

    async def __call__(self, row: SessionRow, mode: AttachMode, pending: bytes) -> AttachOutcome: ...


def short_name(text: str, n: int = 30) -> str:
    """``text`` cut to ``n`` characters with ``...`` (names in dialog texts)."""
    return text if len(text) <= n else text[: n - 3] + "..."


class ConsoleBase:
    """State, the task spawner and the attacher, plus the operation runner."""

    def __init__(self, state: ConsoleState, spawn: Spawn, attacher: Attacher,
                 *, on_quit: Callable[[], None], settings_lines: list[str] | None = None) -> None:
        self.state = state
        self.spawn = spawn
        self.attacher = attacher
        self.on_quit = on_quit
        self.settings_lines = settings_lines or []
        self.peeker = Peeker(state, spawn)

    def _notice(self, title: str, *lines: str, warning: bool = False, **kw: Any) -> NoticeDialog:
        dialog = NoticeDialog(title, lines, warning=warning, **kw)
        dialog.on_done = lambda _outcome: self.state.close(dialog)
        return dialog

    def _fail(self, dialog: Dialog | None, message: str) -> None:
        if dialog is not None and dialog in self.state.dialogs:
            dialog.fail(message)
            self.state.invalidate()
        else:
            self.state.open(self._notice(" Error ", *[message[:200]], warning=True))

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
                self._fail(dialog, str(e))
            except TimeoutError:
                self._fail(dialog, f"{label}: no answer within {OP_TIMEOUT:.0f} s")
            except Exception as e:
                log.exception("operation failed", op=label)
                self._fail(dialog, f"{label} failed: {e}")
            else:
                if dialog is not None:
                    dialog.busy = ""
                on_ok(result)
            finally:
                self.state.end_busy(token)

        self.spawn(runner())

    def _session(self) -> SessionRow | None:
        row = self.state.current()
        return None if row is None or row.placeholder else row

    def _not_running(self, row: SessionRow) -> NoticeDialog:
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

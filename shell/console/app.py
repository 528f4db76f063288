"""The console Application: wiring of state, layout, bindings, router and attach.

:func:`build_console` assembles everything (tests pass a pipe input, a DummyOutput,
a fake router and a fake attacher); :func:`run_console` runs it on the caller's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from shell.attach.relay import StreamAttacher
from shell.console.actions import Attacher, Console
from shell.console.bell import AttentionBell
from shell.console.filters import ConsoleFilters
from shell.console.key_bindings import load_console_bindings
from shell.console.layout import build_layout
from shell.console.state import ConsoleState
from shell.console.style import console_style
from shell.fleet.model import RouterAPI

__all__ = ["ConsoleApplication", "ConsoleParts", "build_console", "run_console"]


class ConsoleApplication(Application[None]):
    """An Application that leaves the screen alone while a session has the terminal.

    The stock ``_on_resize`` erases the screen and may send a CPR query; it runs from
    the SIGWINCH handler and from the size poller. While attached it would write into
    the session's screen, so it forwards the resize to the relay instead.
    """

    resize_hook: Callable[[], None] | None = None
    suspended: Callable[[], bool] = staticmethod(lambda: False)

    def _on_resize(self) -> None:
        if self.suspended():
            if self.resize_hook is not None:
                self.resize_hook()
            return
        super()._on_resize()

    def set_resize_hook(self, hook: Callable[[], None] | None) -> None:
        """Install (or remove) the relay's resize callback."""
        self.resize_hook = hook

    def redraw_at_once(self, _processor: object = None) -> None:
        """Let the next redraw happen at once (wired to every key press).

        ``min_redraw_interval`` spaces redraws out so a burst of router changes costs one
        render per interval; a key should not wait behind it: the screen answers a key
        within one render, not up to an interval later.
        """
        self._last_redraw_time = 0.0


@dataclass
class ConsoleParts:
    """What :func:`build_console` made (tests look inside)."""

    app: ConsoleApplication
    state: ConsoleState
    console: Console
    unsubscribe: Callable[[], None]
    bell: AttentionBell


def build_console(
    router: RouterAPI,
    *,
    attacher: Attacher | None = None,
    settings_lines: list[str] | None = None,
    bell: bool = False,
    input: Input | None = None,   # noqa: A002 - prompt_toolkit's own parameter name
    output: Output | None = None,
) -> ConsoleParts:
    """Build the console for ``router``.

    Args:
        router: the fleet view (cached reads, async operations).
        attacher: hands the terminal to a session; defaults to the real Attach relay.
        settings_lines: extra lines for the Settings dialog (paths in use).
        bell: ring the terminal bell when a session starts needing input.
        input: prompt_toolkit input (a pipe input in tests).
        output: prompt_toolkit output (DummyOutput in tests).

    Returns:
        The application, its state and its controller.
    """
    state = ConsoleState(router)
    app = ConsoleApplication(
        layout=build_layout(state),
        style=console_style(),
        full_screen=True,
        mouse_support=False,
        refresh_interval=1.0,
        min_redraw_interval=0.05,
        input=input,
        output=output,
    )
    app.ttimeoutlen = 0.1
    app.key_processor.before_key_press += app.redraw_at_once
    app.suspended = lambda: state.suspended
    state.invalidate = app.invalidate
    real_attacher = attacher or StreamAttacher(router, app.set_resize_hook)

    def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return app.create_background_task(coro)

    console = Console(state, spawn, real_attacher, on_quit=app.exit,
                      settings_lines=settings_lines)
    app.key_bindings = load_console_bindings(console, ConsoleFilters(state))

    attention = AttentionBell(app.output.bell, enabled=bell, suspended=lambda: state.suspended)
    attention.update(router.rows())

    def changed() -> None:
        attention.update(router.rows())
        app.invalidate()

    return ConsoleParts(app, state, console, router.subscribe(changed), attention)


async def run_console(parts: ConsoleParts) -> None:
    """Run the console until the operator quits (background tasks are cancelled then)."""
    try:
        await parts.app.run_async()
    finally:
        parts.unsubscribe()

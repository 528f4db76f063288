"""The console Application: wiring of state, layout, bindings, router and attach.

:func:`build_console` assembles everything (tests pass a pipe input, a DummyOutput,
a fake router and a fake attacher); :func:`run_console` runs it on the caller's loop.
"""

from __future__ import annotations

import asyncio
import time
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

__all__ = ["CHANGE_INTERVAL", "ConsoleApplication", "ConsoleParts", "build_console", "run_console"]

CHANGE_INTERVAL = 0.05   # seconds between renders caused by router changes (a burst costs one)


class ConsoleApplication(Application[None]):
    """An Application that leaves the screen alone while a session has the terminal.

    The stock ``_on_resize`` erases the screen and may send a CPR query; it runs from
    the SIGWINCH handler and from the size poller. While attached it would write into
    the session's screen, so it forwards the resize to the relay instead.
    """

    resize_hook: Callable[[], None] | None = None
    suspended: Callable[[], bool] = staticmethod(lambda: False)
    operating: Callable[[], bool] = staticmethod(lambda: False)   # an operation the operator began runs

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._change_timer: asyncio.TimerHandle | None = None
        self._last_render = 0.0
        self.after_render += self._rendered

    def _on_resize(self) -> None:
        if self.suspended():
            if self.resize_hook is not None:
                self.resize_hook()
            return
        super()._on_resize()

    def set_resize_hook(self, hook: Callable[[], None] | None) -> None:
        """Install (or remove) the relay's resize callback."""
        self.resize_hook = hook

    def invalidate_soon(self) -> None:
        """Redraw for a router change: at most one render per ``CHANGE_INTERVAL``.

        A burst of router changes (events of many sessions, agents coming and going)
        costs one render per interval. Everything else the operator caused (a key, an
        operation that ended) calls :meth:`invalidate` and is drawn at once: it never
        waits behind this interval (prompt_toolkit's own ``min_redraw_interval`` would
        hold back every redraw, a key's and an ended create's included).

        While an operation the operator began is running, a change waits the whole interval:
        the operation's own events (a create's "created" and "started") come just before its
        answer, whose render then draws them too instead of waiting behind their render.
        """
        if self._change_timer is not None or not self.is_running:
            return
        wait = self._last_render + CHANGE_INTERVAL - time.monotonic()
        if self.operating():
            wait = CHANGE_INTERVAL
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:   # not on the console's loop: invalidate() is the thread-safe way
            wait = 0.0
        if wait <= 0:
            self.invalidate()
            return
        self._change_timer = loop.call_later(wait, self._change_due)

    def _change_due(self) -> None:
        self._change_timer = None
        self.invalidate()

    def _rendered(self, _app: object = None) -> None:
        """After each render: it drew every change so far, so a pending change redraw is moot."""
        self._last_render = time.monotonic()
        if self._change_timer is not None:
            self._change_timer.cancel()
            self._change_timer = None


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
        input=input,
        output=output,
    )
    app.ttimeoutlen = 0.1
    app.suspended = lambda: state.suspended
    app.operating = lambda: bool(state.busy)
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
        app.invalidate_soon()

    return ConsoleParts(app, state, console, router.subscribe(changed), attention)


async def run_console(parts: ConsoleParts) -> None:
    """Run the console until the operator quits (background tasks are cancelled then)."""
    try:
        await parts.app.run_async()
    finally:
        parts.unsubscribe()

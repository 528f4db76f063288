"""When the console redraws: router changes are batched, what the operator caused is drawn at once."""

from __future__ import annotations

import asyncio

import pytest

from shell.console import app as console_app
from tests.fakes.fake_router import make_row
from tests.unit.shell.conftest import Start, agent

TAB = "\t"


@pytest.fixture
def slow_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold router-change redraws for 30 s, far longer than any test waits."""
    monkeypatch.setattr(console_app, "CHANGE_INTERVAL", 30.0)


async def _loop_turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.usefixtures("slow_changes")
async def test_a_burst_of_router_changes_waits_for_one_render(make_console: Start) -> None:
    """100 watch events inside the interval leave one redraw pending, not 100 renders."""
    h = await make_console([agent("agent-a")], [make_row("web")])
    app = h.parts.app
    await h.until(lambda: app.render_counter > 0)
    before = app.render_counter
    for i in range(100):
        h.router.set_rows([make_row(f"s{i}")])
    await _loop_turns()
    # The 1 s auto-refresh (or a render still due from the start) may have drawn in between;
    # the 100 changes themselves did not.
    assert app.render_counter - before <= 2
    assert app._change_timer is not None or app.render_counter > before


@pytest.mark.usefixtures("slow_changes")
async def test_a_key_and_an_ended_create_draw_at_once(make_console: Start) -> None:
    """A pending change redraw never holds back a key or the end of an operation (N to first screen)."""
    h = await make_console([agent("agent-a")], [make_row("web"), make_row("db")])
    app = h.parts.app
    await h.until(lambda: app.render_counter > 0)
    h.router.set_rows([*h.router.rows(), make_row("extra")])   # a change: its redraw waits 30 s
    await _loop_turns()
    before = app.render_counter
    h.send("n")
    await h.until(lambda: h.dialog_title() == "Create on agent agent-a")
    await h.until(lambda: app.render_counter > before)          # the key drew the form
    h.send("new-one" + TAB + TAB + TAB + "\r")
    await h.until(lambda: h.state.message.startswith('Created session "new-one"'))
    # The create's own change (its row) set a 30 s redraw timer just before the operation ended,
    # with nothing between the two: a render after the end clears it (the operation's own, or
    # at worst the 1 s auto-refresh's), well before the timer's 30 s.
    await h.until(lambda: app._change_timer is None)


async def test_a_change_after_a_quiet_spell_draws_at_once(make_console: Start) -> None:
    """With the real interval, a change long after the last render is drawn without a timer."""
    h = await make_console([agent("agent-a")], [make_row("web")])
    app = h.parts.app
    await h.until(lambda: app.render_counter > 0)
    app._last_render -= console_app.CHANGE_INTERVAL
    before = app.render_counter
    h.router.set_rows([make_row("later")])
    assert app._change_timer is None
    await h.until(lambda: app.render_counter > before)


async def test_a_change_during_an_operation_waits_for_the_operations_end(make_console: Start) -> None:
    """While an operation the operator began runs, a change waits the interval: the operation's
    end (its answer comes just after its own events) draws it, and clears the timer."""
    h = await make_console([agent("agent-a")], [make_row("web")])
    app = h.parts.app
    await h.until(lambda: app.render_counter > 0)
    drawn = app.render_counter
    token = h.state.begin_busy("creating")
    await h.until(lambda: app.render_counter > drawn)    # the busy marker is drawn
    app._last_render -= console_app.CHANGE_INTERVAL     # a quiet spell: without the operation, at once
    before = app.render_counter
    h.router.set_rows([make_row("created")])
    assert app._change_timer is not None                 # held back
    h.state.end_busy(token)                              # the operation's end draws at once
    await h.until(lambda: app.render_counter > before)
    await h.until(lambda: app._change_timer is None)

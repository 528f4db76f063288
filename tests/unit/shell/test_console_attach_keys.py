"""Session-list keys: navigation, attach routing, typeahead, filter, help, quit."""

from __future__ import annotations

from dataclasses import replace

from common.domain import AttachMode
from shell.attach.outcome import AttachOutcome
from tests.fakes.fake_router import make_row
from tests.unit.shell.conftest import RecordingAttacher, Start, agent

DOWN = "\x1b[B"


async def test_down_then_enter_attaches_the_selected_row(make_console: Start) -> None:
    """Down then Enter attaches to the second row in drive mode."""
    rows = [make_row("one", running=True), make_row("two", running=True)]
    h = await make_console([agent("agent-a")], rows)
    h.send(DOWN)
    await h.until(lambda: h.state.selected == 1)
    h.send("\r")
    await h.until(lambda: h.attacher.calls)
    row, mode, pending = h.attacher.calls[0]
    assert row.name == "two"
    assert mode == AttachMode.DRIVE
    assert pending == b""
    await h.until(lambda: not h.state.suspended)
    assert "Detached from" in h.state.message


async def test_typeahead_after_enter_goes_to_the_session(make_console: Start) -> None:
    """Keys typed in the same burst as Enter reach the session, not the console."""
    rows = [make_row("one", running=True), make_row("two", running=True)]
    h = await make_console([agent("agent-a")], rows, RecordingAttacher(hold=0.3))
    h.send("\rjq")
    await h.until(lambda: h.attacher.calls)
    assert h.attacher.calls[0][2] == b"jq"
    await h.until(lambda: not h.state.suspended)
    assert not h.task.done()
    assert h.state.selected == 0


async def test_double_enter_attaches_once(make_console: Start) -> None:
    """A second Enter while suspended does not start a second attach."""
    h = await make_console([agent("agent-a")], [make_row("one", running=True)],
                           RecordingAttacher(hold=0.3))
    h.state.suspended = False
    h.parts.console.enter()
    h.parts.console.enter()
    await h.until(lambda: h.attacher.calls)
    await h.until(lambda: not h.state.suspended)
    assert len(h.attacher.calls) == 1


async def test_enter_on_stopped_session_opens_not_running(make_console: Start) -> None:
    """Enter on a stopped session opens Not Running; R there restarts it."""
    h = await make_console([agent("agent-a")], [make_row("idle")])
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Not Running")
    assert not h.attacher.calls
    h.send("r")
    await h.until(lambda: h.router.calls and h.router.calls[-1][0] == "restart")
    await h.until(lambda: h.state.dialog is None)


async def test_digit_quick_attach_checks_not_running(make_console: Start) -> None:
    """Digit 2 on a stopped row opens Not Running (v2.0.0 skipped this check)."""
    rows = [make_row("one", running=True), make_row("two")]
    h = await make_console([agent("agent-a")], rows)
    h.send("2")
    await h.until(lambda: h.dialog_title() == "Not Running")
    h.send("x")
    await h.until(lambda: h.state.dialog is None)
    h.send("1")
    await h.until(lambda: h.attacher.calls)
    assert h.attacher.calls[0][0].name == "one"


async def test_attached_session_offers_observe(make_console: Start) -> None:
    """Enter on a session someone is attached to offers observe; O observes."""
    h = await make_console([agent("agent-a")], [make_row("busy", running=True, attached=True, viewers=2)])
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Session In Use")
    assert "2 viewer(s)" in str(h.state.dialog.body())  # type: ignore[union-attr]
    h.send("o")
    await h.until(lambda: h.attacher.calls)
    assert h.attacher.calls[0][1] == AttachMode.OBSERVE


async def test_attached_session_offers_take_over(make_console: Start) -> None:
    """T in the in-use dialog takes the session over."""
    h = await make_console([agent("agent-a")], [make_row("busy", running=True, attached=True)])
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Session In Use")
    h.send("t")
    await h.until(lambda: h.attacher.calls)
    assert h.attacher.calls[0][1] == AttachMode.TAKE_OVER


async def test_override_key_takes_over_after_confirmation(make_console: Start) -> None:
    """O on an attached session asks, then attaches in take-over mode."""
    h = await make_console([agent("agent-a")], [make_row("busy", running=True, attached=True)])
    h.send("o")
    await h.until(lambda: h.dialog_title() == "Override Lock")
    h.send("y")
    await h.until(lambda: h.attacher.calls)
    assert h.attacher.calls[0][1] == AttachMode.TAKE_OVER


async def test_override_ignored_when_not_attached(make_console: Start) -> None:
    """O does nothing on a session nobody is attached to."""
    h = await make_console([agent("agent-a")], [make_row("free", running=True)])
    h.send("o?")
    await h.until(lambda: h.dialog_title() == "Help")


async def test_broken_attach_says_what_happened(make_console: Start) -> None:
    """A broken attach ends in a dialog naming the cause."""
    outcome = AttachOutcome("broken", "agent agent-a is unreachable: socket closed", broken=True)
    h = await make_console([agent("agent-a")], [make_row("one", running=True)], RecordingAttacher(outcome))
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Connection Lost")
    assert "socket closed" in str(h.state.dialog.body())  # type: ignore[union-attr]


async def test_attacher_exception_is_caught(make_console: Start) -> None:
    """An exception from the attacher becomes a dialog; the console keeps running."""
    class Boom(RecordingAttacher):
        async def __call__(self, row, mode, pending):  # type: ignore[no-untyped-def]
            raise RuntimeError("kaboom")

    h = await make_console([agent("agent-a")], [make_row("one", running=True)], Boom())
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Attach Ended")
    assert not h.state.suspended
    assert not h.task.done()


async def test_filter_narrows_rows_and_escape_clears(make_console: Start) -> None:
    """/ filters rows by name; Esc clears the filter before it would quit."""
    rows = [make_row("alpha"), make_row("beta"), make_row("alphabet")]
    h = await make_console([agent("agent-a")], rows)
    h.send("/alp\r")
    await h.until(lambda: not h.state.filtering and h.state.filter_text == "alp")
    assert [t.row.name for t in h.state.visible()] == ["alpha", "alphabet"]
    assert [t.number for t in h.state.visible()] == [1, 3]
    h.send("\x1b")
    await h.until(lambda: h.state.filter_text == "")
    assert not h.task.done()


async def test_help_lists_keys(make_console: Start) -> None:
    """? opens the help dialog; any key closes it."""
    h = await make_console([agent("agent-a")], [])
    h.send("?")
    await h.until(lambda: h.dialog_title() == "Help")
    assert "Ctrl-B d" in str(h.state.dialog.body())  # type: ignore[union-attr]
    h.send(" ")
    await h.until(lambda: h.state.dialog is None)


async def test_q_quits(make_console: Start) -> None:
    """Q leaves the console."""
    h = await make_console([agent("agent-a")], [])
    h.send("Q")
    await h.until(h.task.done)


async def test_live_update_and_unreachable_agent_row(make_console: Start) -> None:
    """A watch change shows at once; an unreachable agent becomes one marked row."""
    h = await make_console([agent("agent-a")], [])
    h.router.set_rows([make_row("new", running=True)])
    h.router.set_agents([agent("agent-a"), agent("agent-b", reachable=False, error="connection refused")])
    table = h.state.table()
    assert table[0].row.name == "new"
    assert table[-1].row.placeholder
    assert table[-1].row.error == "connection refused"
    h.send(DOWN + "\r")
    await h.until(lambda: h.dialog_title() == "Agent Unreachable")


async def test_resize_while_attached_goes_to_the_relay_not_the_screen(make_console: Start) -> None:
    """While suspended, _on_resize calls the relay hook and leaves the screen alone."""
    h = await make_console([agent("agent-a")], [])
    app = h.parts.app
    calls: list[str] = []
    erased: list[bool] = []
    app.renderer.erase = lambda *a, **k: erased.append(True)  # type: ignore[method-assign]
    app.set_resize_hook(lambda: calls.append("resize"))
    h.state.suspended = True
    app._on_resize()
    assert calls == ["resize"]
    assert erased == []
    h.state.suspended = False
    app.set_resize_hook(None)
    app._on_resize()
    assert erased == [True]


async def test_enter_on_orphan_explains_migration(make_console: Start) -> None:
    """Enter on a local orphan shows how to migrate it instead of attaching."""
    orphan = replace(make_row("old-one"), agent_id="", orphan=True)
    h = await make_console([agent("agent-a")], [orphan])
    h.send("\r")
    await h.until(lambda: h.dialog_title() == "Orphan")
    assert "convocate-host migrate-session" in str(h.state.dialog.body())  # type: ignore[union-attr]
    assert not h.attacher.calls

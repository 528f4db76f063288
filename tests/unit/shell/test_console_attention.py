"""The attention queue in the console: activity column, order, highlight, count, W, I, bell, peek.

Driven through the real key bindings (pipe input) against the fake router; screens are
drawn by prompt_toolkit into a fixed-size VT100 output and read back as text.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prompt_toolkit.application import DummyApplication
from prompt_toolkit.application.current import set_app

from common.errors import UnavailableError
from shell.console.layout import StatusLine, draw_table, title_text
from shell.console.peek import PeekPane
from shell.console.state import ConsoleState, TableRow
from shell.console.table import activity_text, ago, columns_for, format_row, menu_lines
from shell.fleet.model import SessionRow
from tests.fakes.fake_router import FakeRouter, make_row
from tests.unit.shell.conftest import Harness, ScreenOutput, Start, agent

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _row(name: str, activity: str, seconds: float, agent_id: str = "agent-a") -> SessionRow:
    return replace(make_row(name, agent_id, running=True), activity=activity,
                   activity_since=datetime.now(UTC) - timedelta(seconds=seconds))


def _fleet() -> list[SessionRow]:
    """One session in each activity state, two waiting (on different agents) for different times."""
    return [
        _row("busy-one", "working", 10),
        _row("idle-one", "idle", 14 * 3600),
        _row("asks-recently", "needs_input", 60, "agent-b"),
        replace(make_row("stopped-one"), activity="stopped"),
        _row("asks-longest", "needs_input", 600),
        _row("no-hooks", "unknown", 5),
        make_row("old-agent"),
    ]


def test_activity_text_and_relative_times() -> None:
    """Activity with its age; times relative to now."""
    assert activity_text("needs_input", NOW - timedelta(minutes=3), NOW) == "input 3m"
    assert activity_text("working", NOW - timedelta(seconds=10), NOW) == "working 10s"
    assert activity_text("idle", NOW - timedelta(hours=14), NOW) == "idle 14h"
    assert activity_text("idle", NOW - timedelta(days=3), NOW) == "idle 3d"
    assert activity_text("stopped", NOW - timedelta(days=3), NOW) == "stopped"
    assert activity_text("unknown", None, NOW) == "unknown"
    assert activity_text("", None, NOW) == "-"
    assert activity_text("\x1b[2Jbogus", None, NOW) == "unknown"   # untrusted: never drawn raw
    assert ago(NOW - timedelta(minutes=3), NOW) == "3m ago"
    assert ago(NOW - timedelta(hours=30), NOW) == "30h ago"
    assert ago(NOW + timedelta(minutes=3), NOW) == "now"
    assert ago(None, NOW) == "-"


def test_columns_give_way_by_priority() -> None:
    """Name, activity and status first, then agent, then the rest; Name gets what is left."""
    keys = {w: [c.key for c in columns_for(w)] for w in (40, 60, 64, 80, 110, 147, 200)}
    assert keys[40] == ["num", "name", "activity", "status"]
    assert keys[60] == ["num", "name", "activity", "status"]
    assert keys[64] == ["num", "name", "activity", "agent", "status"]
    assert keys[80] == ["num", "name", "activity", "agent", "last", "status"]
    assert keys[110] == ["num", "name", "activity", "agent", "id", "created", "last", "port", "status"]
    assert next(c for c in columns_for(147) if c.key == "id").width == 36
    assert next(c for c in columns_for(146) if c.key == "id").width == 8
    name80 = next(c for c in columns_for(80) if c.key == "name").width
    assert name80 >= 26       # "a-rather-long-session-name" whole
    assert next(c for c in columns_for(200) if c.key == "name").width == 64
    row = replace(make_row("a-rather-long-session-name", running=True), activity="needs_input",
                  activity_since=NOW - timedelta(minutes=3), last_accessed=NOW - timedelta(minutes=3))
    for width in range(34, 220):   # 34: the narrowest whole row (narrower screens cut it)
        line = format_row(TableRow(1, row), columns_for(width), now=NOW)
        assert len(line) <= width, width
        assert line.endswith("R"), width
        assert "input 3m" in line, width
    line80 = format_row(TableRow(1, row), columns_for(80), now=NOW)
    assert "a-rather-long-session-name " in line80
    assert "3m ago" in line80
    assert "2026-" not in line80


def test_menu_never_cuts_a_key() -> None:
    """Every key of the menu appears whole at every width; it wraps rather than cut."""
    for width in (40, 60, 80, 110, 200):
        lines = menu_lines(width)
        assert all(len(line) < width for line in lines), width
        text = " ".join(lines)
        for item in ("(N)ew", "(R)estart", "(P)eek", "(W)aiting", "(I)nput only", "(Q)uit", "? Help"):
            assert item in text, (width, item)
    assert len(menu_lines(200)) == 1
    assert len(menu_lines(80)) == 2


def test_order_count_and_title() -> None:
    """Sessions needing input sort first, longest waiting first; the title counts them."""
    state = ConsoleState(FakeRouter([agent("agent-a"), agent("agent-b")], _fleet()))
    names = [t.row.name for t in state.table()]
    assert names[:2] == ["asks-longest", "asks-recently"]
    assert names[2:] == ["busy-one", "idle-one", "stopped-one", "no-hooks", "old-agent"]
    assert [t.number for t in state.table()] == list(range(1, 8))
    assert "2 need input" in title_text(state, 110, now=0)
    assert "2 need input" in title_text(state, 80, now=0)
    one = ConsoleState(FakeRouter([agent("agent-a")], [_row("x", "needs_input", 5)]))
    assert "1 needs input" in title_text(one, 80, now=0)
    none = ConsoleState(FakeRouter([agent("agent-a")], [_row("x", "idle", 5)]))
    assert "input" not in title_text(none, 80, now=0)


async def test_80x24_screen_shows_name_activity_status_and_whole_menu(make_console: Start) -> None:
    """At 80x24 the drawn screen has the whole name, the activity, the status and every key."""
    out = ScreenOutput(80, 24)
    row = _row("a-rather-long-session-name", "needs_input", 180)
    h = await make_console([agent("agent-a")], [row], output=out)
    await h.until(lambda: "a-rather-long-session-name" in out.text())
    text = out.text()
    assert "input 3m" in text
    assert "1 needs input" in text
    for item in ("(R)estart", "(Q)uit", "(P)eek", "(W)aiting", "(I)nput only", "? Help"):
        assert item in text, item
    assert "2026-" not in text.split("Accessed")[1]   # dates are relative in the table


async def test_200x50_screen_shows_every_column(make_console: Start) -> None:
    """At 200x50 the full session ID, created, accessed, port and the one-line menu show."""
    out = ScreenOutput(200, 50)
    row = replace(_row("wide-screen", "working", 10), port=8080)
    h = await make_console([agent("agent-a")], [row], output=out)
    await h.until(lambda: row.id in out.text())
    text = out.text()
    assert "working 10s" in text or "working 11s" in text
    assert "8080/tcp" in text
    assert "Session ID" in text
    assert "(N)ew | (C)lone" in text


async def test_highlight_jump_and_filter_keys(make_console: Start) -> None:
    """Waiting rows carry the highlight class; W selects the longest waiting; I shows only them."""
    h = await make_console([agent("agent-a"), agent("agent-b")], _fleet())
    styles = _table_styles(h)
    assert styles[0].startswith("class:row.input")
    assert styles[1].startswith("class:row.input")
    assert not any("row.input" in s for s in styles[2:])

    h.send("\x1b[B\x1b[B\x1b[B")      # move away
    await h.until(lambda: h.state.selected == 3)
    h.send("w")
    await h.until(lambda: h.state.selected == 0)
    assert "asks-longest" in h.state.message

    h.send("i")
    await h.until(lambda: h.state.input_only)
    assert [t.row.name for t in h.state.visible()] == ["asks-longest", "asks-recently"]
    h.send("I")
    await h.until(lambda: not h.state.input_only)
    assert len(h.state.visible()) == 7

    # A filter that hides the longest waiting session is cleared by W.
    h.send("/idle\r")
    await h.until(lambda: h.state.filter_text == "idle" and not h.state.filtering)
    h.send("w")
    await h.until(lambda: h.state.filter_text == "")
    assert h.state.current() is not None
    assert h.state.current().name == "asks-longest"  # type: ignore[union-attr]

    # Nobody waiting: W says so.
    h.router.set_rows([_row("calm", "idle", 5)])
    h.send("w")
    await h.until(lambda: h.state.message == "No session needs input.")


def _table_styles(h: Harness) -> list[str]:
    """The style of each drawn table line (drawn in the app's context, as the layout does)."""
    with set_app(h.parts.app):
        frags = draw_table(h.parts.state)
    return [f[0] for f in frags if f[1] != "\n"]


async def test_bell_rings_once_per_transition_when_enabled(make_console: Start) -> None:
    """A BEL when a session starts needing input, once per transition; none when off or at start."""
    out = ScreenOutput(80, 24)
    waiting_at_start = _row("already", "needs_input", 30)
    calm = _row("calm", "working", 5)
    h = await make_console([agent("agent-a")], [waiting_at_start, calm], output=out, bell=True)
    await h.until(lambda: "calm" in out.text())
    assert "\a" not in out.buffer.getvalue()
    asks = replace(calm, activity="needs_input", activity_since=datetime.now(UTC))
    h.router.set_rows([waiting_at_start, asks])
    await h.until(lambda: out.buffer.getvalue().count("\a") == 1)
    h.router.set_rows([waiting_at_start, asks])           # the same wait again: no second bell
    h.router.set_rows([replace(waiting_at_start, name="renamed"), asks])
    assert h.parts.bell.rung == 1
    h.router.set_rows([waiting_at_start, replace(asks, activity="working")])
    again = replace(asks, activity_since=datetime.now(UTC) + timedelta(seconds=1))
    h.router.set_rows([waiting_at_start, again])
    await h.until(lambda: out.buffer.getvalue().count("\a") == 2)

    quiet = ScreenOutput(80, 24)
    q = await make_console([agent("agent-a")], [calm], output=quiet)
    q.router.set_rows([asks])
    assert q.parts.bell.rung == 0
    assert "\a" not in quiet.buffer.getvalue()


async def test_peek_pane_refreshes_replies_and_stops(make_console: Start) -> None:
    """P opens the pane on the selected session's screen; it refreshes; a reply is sent; Esc stops it."""
    row = _row("asks", "needs_input", 60)
    h = await make_console([agent("agent-a")], [row])
    h.router.screens[row.id] = "Allow the tool to run ls?\n  1. Yes\n  2. No\n\n\n"
    h.send("p")
    await h.until(lambda: isinstance(h.state.dialog, PeekPane))
    pane = h.state.dialog
    assert isinstance(pane, PeekPane)
    await h.until(lambda: pane.reads >= 1)
    body = ["".join(f[1] for f in line) for line in pane.body()]
    assert body[:3] == ["Allow the tool to run ls?", "  1. Yes", "  2. No"]
    h.router.screens[row.id] += "changed"
    await h.until(lambda: pane.reads >= 2, timeout=5)       # refreshes on its own while open
    assert any("changed" in "".join(f[1] for f in line) for line in pane.body())
    task = h.parts.console.peeker.task
    assert task is not None

    h.send("1")
    await h.until(lambda: pane.reply.value == "1")
    h.send("\r")
    await h.until(lambda: h.router.replies == [(row.id, "1")])
    await h.until(lambda: h.state.message == 'Sent reply to "asks"')
    assert pane.reply.value == ""

    h.send("\x1b")
    await h.until(lambda: h.state.dialog is None)
    await h.until(task.done)
    peeks = sum(1 for op, _ in h.router.calls if op == "peek")
    assert peeks <= pane.reads + 1    # about one read per second, never a flood


async def test_peek_errors_show_in_the_status_line(make_console: Start) -> None:
    """A failing peek or reply shows its error in the pane and the status line; the pane stays usable."""
    row = _row("far", "needs_input", 60)
    h = await make_console([agent("agent-a")], [row])
    h.router.fail["peek"] = UnavailableError("agent agent-a is unreachable")
    h.send("p")
    await h.until(lambda: isinstance(h.state.dialog, PeekPane))
    await h.until(lambda: "unreachable" in h.state.message)
    assert h.state.message.startswith('peek "far"')
    h.router.fail["reply"] = UnavailableError("no route")
    h.send("yes\r")
    await h.until(lambda: "no route" in h.state.message)
    assert h.router.replies == []
    h.send("\x1b")
    await h.until(lambda: h.state.dialog is None)


async def test_peek_needs_a_running_session(make_console: Start) -> None:
    """P on a stopped session says so instead of opening the pane."""
    h = await make_console([agent("agent-a")], [make_row("off")])
    h.send("p")
    await h.until(lambda: "not running" in h.state.message)
    assert h.state.dialog is None


def test_status_line_says_why_the_selected_session_waits() -> None:
    """With no fresh message, a selected session needing input shows its reason and the CLI's words."""
    row = replace(_row("asks", "needs_input", 60), activity_reason="permission",
                  activity_message="Claude needs your permission to use Bash")
    state = ConsoleState(FakeRouter([agent("agent-a")], [row]))
    with set_app(DummyApplication()):
        text = "".join(f[1] for f in StatusLine(state)())
    assert '"asks" waits for a permission: Claude needs your permission to use Bash' in text

"""The table text: columns that fit 110 columns, status letters, title bar, dialog box."""

from __future__ import annotations

from dataclasses import replace

from shell.console.dialogs import NoticeDialog, render_dialog
from shell.console.layout import StatusLine, title_text
from shell.console.state import ConsoleState, TableRow
from shell.console.table import columns_for, format_header, format_row, menu_lines
from shell.fleet.model import AgentRow
from tests.fakes.fake_router import FakeRouter, make_row
from tests.unit.shell.conftest import agent


def test_row_fits_110_columns_with_status_letter() -> None:
    """At 110 columns every column shows, the ID shortened; the status letter is the last character."""
    cols = columns_for(110)
    row = replace(make_row("a-rather-long-session-name-indeed", running=True, port=8080), agent_id="agent-a")
    line = format_row(TableRow(1, row), cols)
    assert len(line) <= 110
    assert len(format_header(cols)) <= 110
    assert line.endswith("R")
    assert row.id[:8] in line
    assert row.id not in line
    assert "8080/tcp" in line
    assert "agent-a" in line
    assert "a-rather-long-sessio..." in line
    assert [c.key for c in cols] == ["num", "name", "activity", "agent", "id", "created", "last", "port",
                                     "status"]


def test_wide_screen_shows_full_id() -> None:
    """On a wide screen the full session ID is shown."""
    row = make_row("w")
    assert row.id in format_row(TableRow(1, row), columns_for(147))


def test_status_letters() -> None:
    """O orphan, C attached, R running, - stopped; ? while the agent is down."""
    cols = columns_for(110)
    assert format_row(TableRow(1, replace(make_row("o"), orphan=True, agent_id="")), cols).endswith("O")
    assert format_row(TableRow(1, make_row("c", running=True, attached=True)), cols).endswith("C")
    assert format_row(TableRow(1, make_row("s")), cols).endswith("-")
    assert format_row(TableRow(1, make_row("r", running=True), agent_down=True), cols).endswith("?")


def test_unreachable_agent_placeholder_row() -> None:
    """An unreachable agent is one row naming the agent and the error."""
    router = FakeRouter([agent("agent-b", reachable=False, error="connection refused")], [])
    rows = ConsoleState(router).table()
    assert len(rows) == 1
    line = format_row(rows[0], columns_for(110))
    assert "agent-b" in line
    assert "connection refused" in line


def test_title_and_menu_fit() -> None:
    """The title bar shows the clock and agent health; the menu fits 110 columns."""
    router = FakeRouter([agent("a"), agent("b", reachable=False)], [])
    text = title_text(ConsoleState(router), 110, now=0)
    assert len(text) == 110
    assert text.startswith(" convocate")
    assert "agents 1 up, 1 DOWN" in text
    assert all(len(line) < 110 for line in menu_lines(110))
    assert any("(Q)uit" in line for line in menu_lines(80))


def test_error_dialog_widens_and_caps_text() -> None:
    """A dialog with an error widens to 72 columns and caps the text at 500 characters."""
    dialog = NoticeDialog(" T ", ["x"])
    dialog.fail("word " * 200)
    frags, width, height = render_dialog(dialog, 110)
    text = "".join(f[1] for f in frags)
    assert width == 72
    assert "..." in text
    assert height == len(text.split("\n"))


def test_status_letter_visible_on_narrow_screens() -> None:
    """From 71 to 138 columns every row fits and ends with the status letter."""
    row = make_row("narrow-screen-session", running=True)
    for width in (71, 80, 90, 98, 100, 110, 120, 138):
        line = format_row(TableRow(9, row), columns_for(width))
        assert len(line) <= width, width
        assert line.endswith("R"), width


def test_status_line_shows_cross_channel_notices() -> None:
    """An agent's link notice shows in the status line unless a fresh message is there."""
    notices = ("agent -> shell status stream down: refused", "second")
    router = FakeRouter([AgentRow("agent-a", "127.0.0.2", True, notices=notices)], [])
    state = ConsoleState(router)
    line = StatusLine(state)
    text = "".join(f[1] for f in line())
    assert "! agent-a: agent -> shell status stream down: refused" in text
    assert "(+1 more)" in text
    state.message = "Created session"
    assert "Created session" in "".join(f[1] for f in line())

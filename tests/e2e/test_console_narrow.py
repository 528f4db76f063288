"""The console at 80x24 in a real terminal: name, activity, status and every key visible."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from shell.console.table import MENU_ITEMS
from tests.e2e.conftest import Fleet
from tests.support.tmux import TmuxTerminal

pytestmark = [pytest.mark.docker, pytest.mark.tmux]

NAME = "a-rather-long-session-name"


def test_console_80x24_shows_name_activity_status_and_the_whole_key_line(
    fleet: Fleet, open_console: Callable[..., TmuxTerminal]
) -> None:
    """A long name is whole at 80x24, next to its activity and status; no key of the menu is cut."""
    term = open_console(80, 24)
    _, a2 = fleet.agents
    term.wait_for(r"agents 2 up", timeout=30)
    term.send_keys("n")
    term.wait_for(r"Select Agent for New Session")
    options = [line for line in term.capture().splitlines() if "127.0.0." in line]
    index = next(i for i, line in enumerate(options) if "127.0.0.3" in line)
    term.send_keys(*(["Down"] * index), "Enter")
    term.wait_for(rf"Create on agent {a2.agent_id}")
    term.type(NAME)
    term.send_keys("Enter")
    # Name whole, then the activity column, the agent, a relative time and the status letter.
    pattern = rf"^\s+1\s+\| {NAME}\s+\| (\S[^|]*?)\s*\| {a2.agent_id}\s+\| (now|\d+[smh] ago)\s*\| R\s*$"
    row = term.wait_for(pattern, timeout=60)
    assert row.group(1)   # "-", "unknown" or an activity with its age
    screen = term.capture()
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert re.search(r"#\s+\| Name\s+\| Activity\s+\| Agent\s+\| Accessed \| S", screen), screen
    menu = " ".join(line.strip() for line in lines[-2:])
    for item in MENU_ITEMS:
        assert item in menu, (item, screen)
    assert not re.search(r"\d{4}-\d\d-\d\d", "\n".join(lines[1:])), "the table shows dates, not ages"
    term.send_keys("?")
    term.wait_for(r"W  jump to the session waiting longest")
    term.send_keys("Escape")
    term.wait_gone(r"W  jump to the session waiting longest")

    # Peek without attaching: the pane shows the session's screen; a reply asks the stand-in CLI
    # for a permission, so the session needs input: highlighted row, count, W and I.
    term.send_keys("p")
    term.wait_for(rf'Peek: "{NAME}" on {a2.agent_id}', timeout=20)
    term.wait_for(r"claude stand-in", timeout=30)
    term.type(":permit Bash")
    term.send_keys("Enter")
    term.wait_for(rf'Sent reply to "{NAME}"', timeout=20)
    term.wait_for(r"\$ :permit Bash", timeout=20)   # the pane refreshed: the reply is on the session's screen
    term.send_keys("Escape")
    term.wait_gone(r"Peek: ", timeout=10)
    term.wait_for(rf"^\s+1\s+\| {NAME}\s+\| input \d+[sm]\s+\| {a2.agent_id}", timeout=30)
    term.wait_for(r"1 needs input")
    term.send_keys("w")
    term.wait_for(rf'"{NAME}" on {a2.agent_id} waits for input')
    term.send_keys("i")
    term.wait_for(r"filter: needs input")
    term.wait_for(rf"^\s+1\s+\| {NAME}")
    term.send_keys("Escape")
    term.wait_gone(r"filter: needs input")
    term.send_keys("q")
    term.wait_for(r"CONSOLE-EXIT rc=0", timeout=20)

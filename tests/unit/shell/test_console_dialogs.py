"""Dialogs of v2.0.0: new/create form, validation, edit, clone, confirmations, notices."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from common.errors import FailedPreconditionError, NotFoundError
from shell.console.forms import SessionForm
from tests.fakes.fake_router import make_row
from tests.unit.shell.conftest import Start, agent

TAB = "\t"


async def test_new_without_agents_says_how_to_fix(make_console: Start) -> None:
    """N with no agents opens No Agents with the init-agent command."""
    h = await make_console([], [])
    h.send("n")
    await h.until(lambda: h.dialog_title() == "No Agents")
    assert "convocate-host init-agent" in h.state.dialog.hint  # type: ignore[union-attr]


async def test_new_with_two_agents_selects_then_creates(make_console: Start) -> None:
    """N with two agents opens the selector; the form creates on the chosen agent."""
    h = await make_console([agent("agent-a"), agent("agent-b")], [])
    h.send("n")
    await h.until(lambda: h.dialog_title() == "Select Agent for New Session")
    h.send("\x1b[B\r")
    await h.until(lambda: h.dialog_title() == "Create on agent agent-b")
    h.send("web" + TAB + "u" + TAB + "8080" + TAB + "Web.Example\r")
    await h.until(lambda: h.router.calls)
    assert h.router.calls[0] == ("create", ("agent-b", "web", 8080, "udp", "web.example", True))
    await h.until(lambda: h.state.dialog is None)
    assert h.state.message.startswith('Created session "web"')


async def test_new_with_one_agent_opens_form_directly(make_console: Start) -> None:
    """N with one agent skips the selector; port 0 means automatic."""
    h = await make_console([agent("agent-a")], [])
    h.send("n")
    await h.until(lambda: isinstance(h.state.dialog, SessionForm))
    h.send("svc" + TAB + TAB + "0\r")
    await h.until(lambda: h.router.calls)
    assert h.router.calls[0][1][2] == -1


async def test_form_validation_messages_and_focus(make_console: Start) -> None:
    """Invalid values show v2.0.0's message and move the focus to the field."""
    h = await make_console([agent("agent-a")], [])
    h.send("n")
    await h.until(lambda: isinstance(h.state.dialog, SessionForm))
    form = h.state.dialog
    assert isinstance(form, SessionForm)
    h.send("\r")
    await h.until(lambda: form.error == "session name cannot be empty")
    h.send("bad!" + "\r")
    await h.until(lambda: "invalid character: '!'" in form.error)
    assert form.error.endswith("(only letters, digits, spaces, _, -, . allowed)")
    h.send("\x7f" + TAB + TAB + "99999\r")
    await h.until(lambda: form.error == "port must be between 0 and 65535")
    assert form.focus == 2
    h.send("\x7f" * 5 + TAB + "-x\r")
    await h.until(lambda: form.error == "DNS label cannot start or end with '-'")
    assert form.focus == 3
    assert not h.router.calls


async def test_field_filters(make_console: Start) -> None:
    """Port takes digits only (5 at most); DNS lower-cases and drops other characters."""
    h = await make_console([agent("agent-a")], [])
    h.send("n")
    await h.until(lambda: isinstance(h.state.dialog, SessionForm))
    form = h.state.dialog
    assert isinstance(form, SessionForm)
    h.send(TAB + " " + TAB + "a1b2c345678" + TAB + "AB_c.D")
    await h.until(lambda: form.dns.value == "abc.d")
    assert form.port.value == "12345"
    assert form.protocol == "udp"
    h.send("\x1b")
    await h.until(lambda: h.state.dialog is None)


async def test_create_error_stays_in_form(make_console: Start) -> None:
    """A failed create shows the agent's message inside the form."""
    h = await make_console([agent("agent-a")], [])
    h.router.fail["create"] = NotFoundError("port 8080/tcp is already assigned to another session")
    h.send("n")
    await h.until(lambda: isinstance(h.state.dialog, SessionForm))
    h.send("x" + TAB + TAB + "8080\r")
    await h.until(lambda: h.state.dialog is not None and "already assigned" in h.state.dialog.error)


async def test_edit_then_restart_prompt(make_console: Start) -> None:
    """E saves the form, then asks to restart; Y restarts."""
    row = make_row("old", port=9000)
    h = await make_console([agent("agent-a")], [row])
    h.send("e")
    await h.until(lambda: h.dialog_title() == "Edit Session")
    form = h.state.dialog
    assert isinstance(form, SessionForm)
    assert form.port.value == "9000"
    h.send("\x7f\x7f\x7fnew\r")
    await h.until(lambda: h.dialog_title() == "Restart Session")
    assert h.router.calls[0] == ("update", (row.id, "new", 9000, "tcp", ""))
    h.send("y")
    await h.until(lambda: h.router.calls[-1][0] == "restart")
    await h.until(lambda: h.state.dialog is None)


async def test_clone_validates_and_clones(make_console: Start) -> None:
    """C asks for a name, validates it and clones on the source agent."""
    row = make_row("src")
    h = await make_console([agent("agent-a")], [row])
    h.send("c")
    await h.until(lambda: h.dialog_title() == "Clone Session")
    h.send("\r")
    await h.until(lambda: h.state.dialog and h.state.dialog.error == "session name cannot be empty")
    h.send("copy\r")
    await h.until(lambda: h.router.calls == [("clone", (row.id, "copy"))])
    await h.until(lambda: h.state.message.startswith('Cloned session "copy"'))


async def test_delete_yes_and_no(make_console: Start) -> None:
    """D asks; N keeps the session, Y deletes it."""
    row = make_row("doomed")
    h = await make_console([agent("agent-a")], [row])
    h.send("d")
    await h.until(lambda: h.dialog_title() == "Confirm Delete")
    h.send("n")
    await h.until(lambda: h.state.dialog is None)
    h.send("D")
    await h.until(lambda: h.dialog_title() == "Confirm Delete")
    h.send("Y")
    await h.until(lambda: h.router.rows() == [])
    await h.until(lambda: h.state.message.startswith('Deleted session "doomed"'))


async def test_delete_error_shown_in_dialog_with_busy_marker(make_console: Start) -> None:
    """While an operation runs the title bar is busy; its error shows in the dialog."""
    h = await make_console([agent("agent-a")], [make_row("x")])
    h.router.gate = asyncio.Event()
    h.router.fail["delete"] = NotFoundError('session "x" does not exist')
    h.send("dy")
    await h.until(lambda: h.state.busy)
    assert "deleting" in h.state.busy.values()
    h.router.gate.set()
    await h.until(lambda: h.state.dialog is not None and "does not exist" in h.state.dialog.error)
    assert not h.state.busy


async def test_kill_stopped_and_running(make_console: Start) -> None:
    """K on a stopped session says Not Running; on a running one, Kill Initiated."""
    h = await make_console([agent("agent-a")], [make_row("stopped"), make_row("live", running=True)])
    h.send("ky")
    await h.until(lambda: h.dialog_title() == "Not Running")
    h.send(" ")
    await h.until(lambda: h.state.dialog is None)
    h.send("\x1b[Bky")
    await h.until(lambda: h.dialog_title() == "Kill Initiated")
    assert h.router.calls[-1][0] == "kill"


async def test_background_needs_a_connected_session(make_console: Start) -> None:
    """B on an unattached session says Not Connected; on an attached one, Backgrounded."""
    rows = [make_row("alone", running=True), make_row("watched", running=True, attached=True)]
    h = await make_console([agent("agent-a")], rows)
    h.send("by")
    await h.until(lambda: h.dialog_title() == "Not Connected")
    h.send(" ")
    await h.until(lambda: h.state.dialog is None)
    h.send("\x1b[Bby")
    await h.until(lambda: h.dialog_title() == "Backgrounded")


async def test_restart_running_and_stopped(make_console: Start) -> None:
    """R on a running session says Already Running; on a stopped one it restarts."""
    h = await make_console([agent("agent-a")], [make_row("up", running=True), make_row("down")])
    h.send("r")
    await h.until(lambda: h.dialog_title() == "Already Running")
    h.send(" ")
    await h.until(lambda: h.state.dialog is None)
    h.send("\x1b[Bry")
    await h.until(lambda: h.dialog_title() == "Restarting")
    h.send("x")
    await asyncio.sleep(0.2)
    assert h.dialog_title() == "Restarting"
    h.send("\r")
    await h.until(lambda: h.state.dialog is None)


async def test_restart_of_an_unknown_session_asks_the_agent(make_console: Start) -> None:
    """R on a session whose state is unknown (last known running) goes to the agent: engine down."""
    down = "the Docker Engine on agent agent-a does not answer: start it with `systemctl start docker`"
    h = await make_console([agent("agent-a")], [replace(make_row("lost", running=True), unknown=True)])
    h.router.fail["restart"] = FailedPreconditionError(down)
    h.send("ry")
    await h.until(lambda: h.state.dialog is not None and h.state.dialog.error == down)
    assert h.router.calls[-1][0] == "restart"


async def test_settings_closes_on_enter_only(make_console: Start) -> None:
    """S opens Settings (paths and agents); Tab does nothing; Enter closes."""
    h = await make_console([agent("agent-a")], [])
    h.send("s")
    await h.until(lambda: h.dialog_title() == "Settings")
    assert "agent-a" in str(h.state.dialog.body())  # type: ignore[union-attr]
    h.send(TAB)
    await asyncio.sleep(0.1)
    assert h.dialog_title() == "Settings"
    h.send("\r")
    await h.until(lambda: h.state.dialog is None)


async def test_edit_running_session_stops_then_restarts(make_console: Start) -> None:
    """Restarting after an edit of a running session stops it first (v2.0.0 failed here)."""
    row = make_row("live", running=True)
    h = await make_console([agent("agent-a")], [row])
    h.send("e")
    await h.until(lambda: h.dialog_title() == "Edit Session")
    h.send("2\r")
    await h.until(lambda: h.dialog_title() == "Restart Session")
    assert "it is running" in str(h.state.dialog.body())  # type: ignore[union-attr]
    h.send("y")
    await h.until(lambda: h.state.dialog is None)
    assert [c[0] for c in h.router.calls] == ["update", "kill", "restart"]
    assert h.router.rows()[0].name == "live2"
    assert h.router.rows()[0].running


async def test_slow_operation_can_continue_in_the_background(make_console: Start) -> None:
    """Esc hides a busy dialog; the console stays usable and the result arrives later."""
    h = await make_console([agent("agent-a")], [])
    h.router.gate = asyncio.Event()
    h.send("n")
    await h.until(lambda: isinstance(h.state.dialog, SessionForm))
    h.send("slow\r")
    await h.until(lambda: h.state.busy)
    h.send("\x1b")
    await h.until(lambda: h.state.dialog is None)
    assert "creating continues in the background" in h.state.message
    h.send("?")
    await h.until(lambda: h.dialog_title() == "Help")
    h.send(" ")
    h.router.gate.set()
    await h.until(lambda: h.state.message.startswith('Created session "slow"'))
    assert not h.state.busy

"""What each key of the session list does: open dialogs and run operations.

:class:`Console` is the controller behind the key bindings. It is composed by job: the
operation runner (:class:`~shell.console.operations.Operations`), the attach routes
(:class:`~shell.console.attach_routes.AttachRoutes`) and the peek pane
(:class:`~shell.console.peek.Peeker`); the session keys themselves are its methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from common.domain import AttachMode
from common.errors import AlreadyExistsError, FailedPreconditionError
from shell.console.attach_routes import AttachRoutes
from shell.console.dialogs import ChoiceDialog, ConfirmDialog, Dialog
from shell.console.forms import CloneDialog, SessionForm
from shell.console.operations import OP_TIMEOUT, Attacher, Operations, Spawn, short_name
from shell.console.peek import Peeker
from shell.console.state import ConsoleState
from shell.fleet.model import AgentRow, SessionRow

__all__ = ["HELP_LINES", "OP_TIMEOUT", "RESTART_ATTEMPTS", "Attacher", "Console"]

RESTART_ATTEMPTS = 20
RESTART_WAIT = 10.0       # s for a killed session's stop to reach the router
RESTART_RETRY_WAIT = 0.5  # s at most between restart attempts while the old container goes

HELP_LINES = [
    "Up/Down    move            Enter / 1-9  attach",
    "N  new      C  clone        E  edit        B  background",
    "D  delete   K  kill         O  take over   S  settings",
    "R  restart  /  filter       ?  help        Q / Esc  quit",
    "P  peek at the screen and reply without attaching",
    "W  jump to the session waiting longest for input",
    "I  show only the sessions needing input (again: all)",
    "",
    "While attached: Ctrl-B d detaches (the session keeps running).",
    "Status: R running, C attached by someone, O orphan, - stopped.",
    "Activity: input (waits for you), working, idle; with its age.",
]




def agent_lines(a: AgentRow) -> list[str]:
    """One agent in Settings: address and link, then its engine and host, then what is wrong."""
    head = f"  {a.agent_id:<14} {a.address:<16} " + ("up" if a.reachable else f"DOWN: {a.last_error}")[:28]
    if not a.reachable or a.health is None:
        return [head]
    return [head, f"    {a.health.summary()}", *(f"    ! {p}" for p in a.problems)]

class Console:
    """The controller behind the key bindings."""

    def __init__(self, state: ConsoleState, spawn: Spawn, attacher: Attacher,
                 *, on_quit: Callable[[], None], settings_lines: list[str] | None = None) -> None:
        self.state = state
        self.on_quit = on_quit
        self.settings_lines = settings_lines or []
        self.ops = Operations(state, spawn)
        self.routes = AttachRoutes(self.ops, attacher)
        self.peeker = Peeker(state, spawn)

    # -- attach (delegated) ----------------------------------------------------------
    def enter(self, pending: bytes = b"") -> None:
        """Enter: attach to the selected row (or explain why not)."""
        self.routes.enter(pending)

    def quick_attach(self, number: int, pending: bytes = b"") -> None:
        """1-9: attach to row ``number`` of the table."""
        self.routes.quick_attach(number, pending)

    # -- keys ----------------------------------------------------------------------
    def new(self) -> None:
        """N: agent selector (several agents), the form (one), or "No Agents" (none)."""
        agents = self.state.agents()
        if not agents:
            self.state.open(self.ops.notice(
                " No Agents ", "No convocate-agent hosts are registered.", warning=True,
                hint="Run 'convocate-host init-agent' to add one. Press any key."))
            return
        if len(agents) == 1:
            self.open_create(agents[0].agent_id)
            return
        labels = [f"{a.agent_id}  {a.address}" + ("" if a.reachable else "  (unreachable)")
                  for a in agents]

        def done(outcome: str) -> None:
            self.state.close(chooser)
            if outcome == "select":
                self.open_create(agents[chooser.index].agent_id)

        chooser = ChoiceDialog(" Select Agent for New Session ", labels, done)
        self.state.open(chooser)

    def open_create(self, agent_id: str) -> None:
        """The create form for ``agent_id``; the session is started once created."""
        def done(outcome: str) -> None:
            if outcome == "cancel" or form.values is None:
                self.state.close(form)
                return
            v = form.values
            self.ops.run_op("creating", lambda: self.state.router.create(
                agent_id, v.name, v.port, v.protocol, v.dns_name, start=True), created, form)

        def created(row: SessionRow) -> None:
            self.state.close(form)
            extra = f", port {row.port}/{row.protocol}" if row.port else ""
            extra += f', DNS name "{row.dns_name}"' if row.dns_name else ""
            self.state.message = (f'Created session "{row.name}" ({row.id[:8]}) on agent '
                                  f"{row.agent_id}{extra}; press Enter on it to attach.")
            self._select_id(row.id)

        form = SessionForm(f" Create on agent {agent_id} ", done)
        self.state.open(form)

    def _select_id(self, session_id: str) -> None:
        for i, t in enumerate(self.state.visible()):
            if t.row.id == session_id:
                self.state.selected = i
        self.state.invalidate()

    def clone(self) -> None:
        """C: clone the selected session under a new name (on its agent)."""
        src = self.ops.session()
        if src is None:
            return

        def done(outcome: str) -> None:
            if outcome == "cancel":
                self.state.close(dialog)
                return
            self.ops.run_op("cloning", lambda: self.state.router.clone(src.id, dialog.value), cloned, dialog)

        def cloned(row: SessionRow) -> None:
            self.state.close(dialog)
            self.state.message = (f'Cloned session "{row.name}" ({row.id[:8]}) from {src.id[:8]} '
                                  f"on agent {row.agent_id}")

        dialog = CloneDialog(short_name(src.name, 40), done)
        self.state.open(dialog)

    def edit(self) -> None:
        """E: edit the selected session, then offer to restart it."""
        row = self.ops.session()
        if row is None:
            return

        def done(outcome: str) -> None:
            if outcome == "cancel" or form.values is None:
                self.state.close(form)
                return
            v = form.values
            self.ops.run_op("saving", lambda: self.state.router.update(
                row.id, v.name, v.port, v.protocol, v.dns_name), saved, form)

        def saved(updated: SessionRow) -> None:
            name = short_name(updated.name)

            def answer(outcome: str) -> None:
                if outcome != "yes":
                    self.state.close(prompt)
                    return
                self.ops.run_op("restarting", lambda: self._stop_and_restart(row.id),
                            lambda _r: self.state.close(prompt), prompt)

            running = any(r.id == row.id and r.running for r in self.state.router.rows())
            prompt = ConfirmDialog(" Restart Session ", [
                f'Saved. Restart session "{name}" now?',
                "Y = restart now   N = keep config, don't restart",
                *(["(it is running: Y stops it first)"] if running else [])], answer)
            self.state.replace(form, prompt)

        form = SessionForm(" Edit Session ", done, name=row.name, protocol=row.protocol,
                           port=row.port, dns_name=row.dns_name)
        self.state.open(form)

    async def _stop_and_restart(self, session_id: str) -> SessionRow:
        """Restart with the new settings; a running session is stopped first (v2.0.0 could not).

        The agent removes a stopped container after it reports the stop, so a restart can
        still meet the old container for a moment: each retry waits for the router's next
        change (the watch stream's stop/remove events) rather than for a fixed time.
        """
        router = self.state.router

        def running() -> bool:
            return any(r.id == session_id and r.running for r in router.rows())

        if running():
            await router.kill(session_id)
            await self._router_change(lambda: not running(), RESTART_WAIT)
        for _ in range(RESTART_ATTEMPTS - 1):
            try:
                return await router.restart(session_id)
            except (FailedPreconditionError, AlreadyExistsError):
                await self._router_change(lambda: False, RESTART_RETRY_WAIT)
        return await router.restart(session_id)

    async def _router_change(self, done: Callable[[], bool], timeout: float) -> None:
        """Wait until ``done()`` holds after a router change, or ``timeout`` s (then go on)."""
        changed = asyncio.Event()
        unsubscribe = self.state.router.subscribe(changed.set)
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            pass
        finally:
            unsubscribe()

    def _confirm(self, title: str, question: str, on_yes: Callable[[ConfirmDialog], None]) -> None:
        def answer(outcome: str) -> None:
            if outcome == "yes":
                on_yes(dialog)
            else:
                self.state.close(dialog)

        dialog = ConfirmDialog(title, [question], answer)
        self.state.open(dialog)

    def background(self) -> None:
        """B: detach every viewer of the selected session; it keeps running."""
        row = self.ops.session()
        if row is None:
            return
        name = short_name(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            if not (row.running and row.attached):
                self.state.replace(dialog, self.ops.notice(
                    " Not Connected ", f'Session "{name}" is not connected.', warning=True))
                return
            self.ops.run_op("backgrounding", lambda: self.state.router.background(row.id),
                        lambda _r: self.state.replace(dialog, self.ops.notice(
                            " Backgrounded ", f'Session "{name}" backgrounded.')), dialog)

        self._confirm(" Background Session ", f'Background session "{name}"?', yes)

    def delete(self) -> None:
        """D: delete the selected session (its directory too)."""
        row = self.ops.session()
        if row is None:
            return
        name = short_name(row.name)

        def deleted(_r: None) -> None:
            self.state.close(dialog_ref[0])
            self.state.message = f'Deleted session "{row.name}" ({row.id[:8]})'

        dialog_ref: list[Dialog] = []

        def yes(dialog: ConfirmDialog) -> None:
            dialog_ref.append(dialog)
            self.ops.run_op("deleting", lambda: self.state.router.delete(row.id), deleted, dialog)

        self._confirm(" Confirm Delete ", f'Delete session "{name}"?', yes)

    def kill(self) -> None:
        """K: stop the selected session's container."""
        row = self.ops.session()
        if row is None:
            return
        name = short_name(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            if not row.running and not row.unknown:  # unknown: the agent answers for itself
                self.state.replace(dialog, self.ops.not_running(row))
                return
            self.ops.run_op("killing", lambda: self.state.router.kill(row.id),
                        lambda _r: self.state.replace(dialog, self.ops.notice(
                            " Kill Initiated ", f'Kill initiated for session "{name}".')), dialog)

        self._confirm(" Kill Session ", f'Kill session "{name}"?', yes)

    def override(self) -> None:
        """O: take over a session someone else is attached to (detaches them)."""
        row = self.ops.session()
        if row is None or not row.attached:
            return
        name = short_name(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            self.state.close(dialog)
            self.routes.attach(row, AttachMode.TAKE_OVER, b"")

        self._confirm(" Override Lock ", f'Take over session "{name}" (detach the others)?', yes)

    def settings(self) -> None:
        """S: the settings dialog (read-only: where things are)."""
        agents = [line for a in self.state.agents() for line in agent_lines(a)]
        lines = ["No settings are configurable at this time.", "Future options will appear here.",
                 "", *self.settings_lines, "", f"Agents ({len(self.state.agents())}):", *agents]
        self.state.open(self.ops.notice(" Settings ", *lines, close_keys=("enter", "escape"),
                                     hint="Tab=Next  Shift+Tab=Prev  Enter=Save  Esc=Cancel", width=64))

    def restart(self) -> None:
        """R: start a stopped session in the background."""
        row = self.ops.session()
        if row is None:
            return
        name = short_name(row.name)
        if row.running and not row.unknown:  # unknown: the agent answers (e.g. its engine is down)
            self.state.open(self.ops.notice(" Already Running ", f'Session "{name}" is already running.',
                                         "Press Enter on it to connect."))
            return

        def yes(dialog: ConfirmDialog) -> None:
            self.ops.run_op("restarting", lambda: self.state.router.restart(row.id),
                        lambda _r: self.state.replace(dialog, self.ops.notice(
                            " Restarting ", f'Restarting session "{name}" in the background...',
                            hint="Press Enter to continue", close_keys=("enter",))), dialog)

        self._confirm(" Restart Session ", f'Restart session "{name}" in background?', yes)

    def peek(self) -> None:
        """P: the peek pane on the selected session (its screen, a reply field)."""
        row = self.ops.session()
        if row is None:
            return
        if row.orphan or not row.running:
            self.state.message = f'Session "{short_name(row.name)}" is not running: nothing to peek at.'
            self.state.invalidate()
            return
        self.peeker.open(row)

    def jump_waiting(self) -> None:
        """W: select the session that has waited longest for input."""
        row = self.state.jump_to_waiting()
        self.state.message = (f'"{short_name(row.name)}" on {row.agent_id} waits for input' if row is not None
                              else "No session needs input.")
        self.state.invalidate()

    def toggle_input_only(self) -> None:
        """I: show only the sessions needing input, or all again."""
        self.state.input_only = not self.state.input_only
        self.state.selected = 0
        self.state.invalidate()

    def help(self) -> None:
        """?: the key list."""
        self.state.open(self.ops.notice(" Help ", *HELP_LINES, width=66))

    def quit(self) -> None:
        """Q / Esc: leave the console."""
        self.on_quit()

"""What each key of the session list does: open dialogs, run operations, route attach.

Handlers never await: an operation runs as a background task (``spawn``) while the
dialog shows a busy line and the title bar a busy marker; its error is shown in the
dialog that asked for it (or in an error notice when that dialog is gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from convocate.v1 import attach_pb2

from common.errors import ConvocateError
from common.logging import get_logger
from shell.attach_outcome import AttachOutcome, Mode
from shell.dialogs import ChoiceDialog, ConfirmDialog, Dialog, NoticeDialog
from shell.forms import CloneDialog, SessionForm
from shell.model import SessionRow
from shell.state import ConsoleState

__all__ = ["HELP_LINES", "OP_TIMEOUT", "Attacher", "Console"]

OP_TIMEOUT = 90.0
T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None]], None]
log = get_logger("shell.actions")

HELP_LINES = [
    "Up/Down    move            Enter / 1-9  attach",
    "N  new      C  clone        E  edit        B  background",
    "D  delete   K  kill         O  take over   S  settings",
    "R  restart  /  filter       ?  help        Q / Esc  quit",
    "",
    "While attached: Ctrl-B d detaches (the session keeps running).",
    "Status: R running, C attached by someone, O orphan, - stopped.",
]


class Attacher(Protocol):
    """Hands the terminal to a session until it detaches or the stream ends."""

    async def __call__(self, row: SessionRow, mode: Mode, pending: bytes) -> AttachOutcome: ...


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class Console:
    """The controller behind the key bindings."""

    def __init__(self, state: ConsoleState, spawn: Spawn, attacher: Attacher,
                 *, on_quit: Callable[[], None], settings_lines: list[str] | None = None) -> None:
        self.state = state
        self.spawn = spawn
        self.attacher = attacher
        self.on_quit = on_quit
        self.settings_lines = settings_lines or []

    # -- helpers -------------------------------------------------------------------
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
            dialog.busy, dialog.error = f"{label}...", ""

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

    # -- keys ----------------------------------------------------------------------
    def new(self) -> None:
        """N: agent selector (several agents), the form (one), or "No Agents" (none)."""
        agents = self.state.agents()
        if not agents:
            self.state.open(self._notice(
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
            self.run_op("creating", lambda: self.state.router.create(
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
        src = self._session()
        if src is None:
            return

        def done(outcome: str) -> None:
            if outcome == "cancel":
                self.state.close(dialog)
                return
            self.run_op("cloning", lambda: self.state.router.clone(src.id, dialog.value), cloned, dialog)

        def cloned(row: SessionRow) -> None:
            self.state.close(dialog)
            self.state.message = (f'Cloned session "{row.name}" ({row.id[:8]}) from {src.id[:8]} '
                                  f"on agent {row.agent_id}")

        dialog = CloneDialog(_short(src.name, 40), done)
        self.state.open(dialog)

    def edit(self) -> None:
        """E: edit the selected session, then offer to restart it."""
        row = self._session()
        if row is None:
            return

        def done(outcome: str) -> None:
            if outcome == "cancel" or form.values is None:
                self.state.close(form)
                return
            v = form.values
            self.run_op("saving", lambda: self.state.router.update(
                row.id, v.name, v.port, v.protocol, v.dns_name), saved, form)

        def saved(updated: SessionRow) -> None:
            name = _short(updated.name)

            def answer(outcome: str) -> None:
                if outcome != "yes":
                    self.state.close(prompt)
                    return
                self.run_op("restarting", lambda: self.state.router.restart(row.id),
                            lambda _r: self.state.close(prompt), prompt)

            prompt = ConfirmDialog(" Restart Session ", [
                f'Saved. Restart session "{name}" now?',
                "Y = restart now   N = keep config, don't restart"], answer)
            self.state.replace(form, prompt)

        form = SessionForm(" Edit Session ", done, name=row.name, protocol=row.protocol,
                           port=row.port, dns_name=row.dns_name)
        self.state.open(form)

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
        row = self._session()
        if row is None:
            return
        name = _short(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            if not (row.running and row.attached):
                self.state.replace(dialog, self._notice(
                    " Not Connected ", f'Session "{name}" is not connected.', warning=True))
                return
            self.run_op("backgrounding", lambda: self.state.router.background(row.id),
                        lambda _r: self.state.replace(dialog, self._notice(
                            " Backgrounded ", f'Session "{name}" backgrounded.')), dialog)

        self._confirm(" Background Session ", f'Background session "{name}"?', yes)

    def delete(self) -> None:
        """D: delete the selected session (its directory too)."""
        row = self._session()
        if row is None:
            return
        name = _short(row.name)

        def deleted(_r: None) -> None:
            self.state.close(dialog_ref[0])
            self.state.message = f'Deleted session "{row.name}" ({row.id[:8]})'

        dialog_ref: list[Dialog] = []

        def yes(dialog: ConfirmDialog) -> None:
            dialog_ref.append(dialog)
            self.run_op("deleting", lambda: self.state.router.delete(row.id), deleted, dialog)

        self._confirm(" Confirm Delete ", f'Delete session "{name}"?', yes)

    def kill(self) -> None:
        """K: stop the selected session's container."""
        row = self._session()
        if row is None:
            return
        name = _short(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            if not row.running:
                self.state.replace(dialog, self._not_running(row))
                return
            self.run_op("killing", lambda: self.state.router.kill(row.id),
                        lambda _r: self.state.replace(dialog, self._notice(
                            " Kill Initiated ", f'Kill initiated for session "{name}".')), dialog)

        self._confirm(" Kill Session ", f'Kill session "{name}"?', yes)

    def override(self) -> None:
        """O: take over a session someone else is attached to (detaches them)."""
        row = self._session()
        if row is None or not row.attached:
            return
        name = _short(row.name)

        def yes(dialog: ConfirmDialog) -> None:
            self.state.close(dialog)
            self.attach(row, attach_pb2.ATTACH_MODE_TAKE_OVER, b"")

        self._confirm(" Override Lock ", f'Take over session "{name}" (detach the others)?', yes)

    def settings(self) -> None:
        """S: the settings dialog (read-only: where things are)."""
        lines = ["No settings are configurable at this time.", "Future options will appear here.",
                 "", *self.settings_lines]
        self.state.open(self._notice(" Settings ", *lines, close_keys=("enter", "escape"),
                                     hint="Tab=Next  Shift+Tab=Prev  Enter=Save  Esc=Cancel", width=64))

    def restart(self) -> None:
        """R: start a stopped session in the background."""
        row = self._session()
        if row is None:
            return
        name = _short(row.name)
        if row.running:
            self.state.open(self._notice(" Already Running ", f'Session "{name}" is already running.',
                                         "Press Enter on it to connect."))
            return

        def yes(dialog: ConfirmDialog) -> None:
            self.run_op("restarting", lambda: self.state.router.restart(row.id),
                        lambda _r: self.state.replace(dialog, self._notice(
                            " Restarting ", f'Restarting session "{name}" in the background...',
                            hint="Press Enter to continue", close_keys=("enter",))), dialog)

        self._confirm(" Restart Session ", f'Restart session "{name}" in background?', yes)

    def help(self) -> None:
        """?: the key list."""
        self.state.open(self._notice(" Help ", *HELP_LINES, width=64))

    def quit(self) -> None:
        """Q / Esc: leave the console."""
        self.on_quit()

    # -- attach --------------------------------------------------------------------
    def _not_running(self, row: SessionRow) -> NoticeDialog:
        name = _short(row.name)
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

    def enter(self, pending: bytes = b"") -> None:
        """Enter: attach to the selected row (or explain why not)."""
        row = self.state.current()
        if row is not None:
            self.route_attach(row, pending)

    def quick_attach(self, number: int, pending: bytes = b"") -> None:
        """1-9: attach to row ``number`` of the table, with the same checks as Enter."""
        row = self.state.by_number(number)
        if row is not None:
            self.route_attach(row, pending)

    def route_attach(self, row: SessionRow, pending: bytes) -> None:
        """Attach, or open the unreachable / orphan / not-running / in-use dialog."""
        name = _short(row.name)
        if row.placeholder:
            self.state.open(self._notice(" Agent Unreachable ", f"Agent {row.agent_id} is unreachable:",
                                         _short(row.error, 60), warning=True))
        elif row.orphan:
            self.state.open(self._notice(
                " Orphan ", f'Session "{name}" is a local orphan (the shell host no longer',
                "runs containers); migrate it to a convocate-agent to resume:",
                f"convocate-host migrate-session {row.id[:8]} --agent <id>"))
        elif not row.running:
            self.state.open(self._not_running(row))
        elif row.attached:
            viewers = max(row.viewer_count, 1)
            options = ["Observe (read-only)", "Take over (detach the others)"]

            def done(outcome: str) -> None:
                self.state.close(chooser)
                if outcome == "select":
                    mode = (attach_pb2.ATTACH_MODE_OBSERVE if chooser.index == 0
                            else attach_pb2.ATTACH_MODE_TAKE_OVER)
                    self.attach(row, mode, b"")

            chooser = ChoiceDialog(
                " Session In Use ", options, done,
                lines=[f'Session "{name}" is attached by {viewers} viewer(s).', ""],
                hint="O=Observe  T=Take over  Enter=Select  Esc=Cancel",
                hotkeys={"o": options[0], "t": options[1]})
            self.state.open(chooser)
        else:
            self.attach(row, attach_pb2.ATTACH_MODE_DRIVE, pending)

    def attach(self, row: SessionRow, mode: Mode, pending: bytes) -> None:
        """Hand the terminal to ``row`` (background task); say how it ended."""
        if self.state.suspended:
            return
        self.state.suspended = True      # set before the task starts: no double attach

        async def run() -> None:
            try:
                outcome = await self.attacher(row, mode, pending)
            except Exception as e:       # an escaping error would block on "Press ENTER"
                log.exception("attach failed", session=row.id)
                outcome = AttachOutcome("error", f"attach failed: {e}", broken=True)
            finally:
                self.state.suspended = False
            log.info("attach ended", session=row.id, reason=outcome.reason, message=outcome.message)
            if outcome.broken:
                self.state.open(self._notice(" Connection Lost " if outcome.reason == "broken"
                                             else " Attach Ended ", *outcome.lines(row.name),
                                             warning=True))
            else:
                self.state.message = outcome.summary(row.name)
            self.state.invalidate()

        self.spawn(run())

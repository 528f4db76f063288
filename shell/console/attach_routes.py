"""Attach routing: Enter and 1-9 attach, or explain why not (unreachable, orphan,
not running, in use), then hand the terminal over and report how it ended."""

from __future__ import annotations

from common.domain import AttachMode
from common.logging import get_logger
from shell.attach.outcome import AttachOutcome
from shell.console.dialogs import ChoiceDialog
from shell.console.operations import Attacher, Operations, short_name
from shell.fleet.model import SessionRow

__all__ = ["AttachRoutes"]

log = get_logger(__name__)


class AttachRoutes:
    """Enter, 1-9 and take-over: which dialog, or which attach, a row gets."""

    def __init__(self, ops: Operations, attacher: Attacher) -> None:
        self.ops = ops
        self.state = ops.state
        self.attacher = attacher

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
        name = short_name(row.name)
        if row.placeholder:
            self.state.open(self.ops.notice(" Agent Unreachable ", f"Agent {row.agent_id} is unreachable:",
                                         short_name(row.error, 60), warning=True))
        elif row.orphan:
            self.state.open(self.ops.notice(
                " Orphan ", f'Session "{name}" is a local orphan (the shell host no longer',
                "runs containers); migrate it to a convocate-agent to resume:",
                "convocate-host migrate-session --agent <agent-id> \\",
                f"    --session {row.id}", width=72))
        elif not row.running:
            self.state.open(self.ops.not_running(row))
        elif row.attached:
            viewers = max(row.viewer_count, 1)
            options = ["Observe (read-only)", "Take over (detach the others)"]

            def done(outcome: str) -> None:
                self.state.close(chooser)
                if outcome == "select":
                    mode = (AttachMode.OBSERVE if chooser.index == 0
                            else AttachMode.TAKE_OVER)
                    self.attach(row, mode, b"")

            chooser = ChoiceDialog(
                " Session In Use ", options, done,
                lines=[f'Session "{name}" is attached by {viewers} viewer(s).', ""],
                hint="O=Observe  T=Take over  Enter=Select  Esc=Cancel",
                hotkeys={"o": options[0], "t": options[1]})
            self.state.open(chooser)
        else:
            self.attach(row, AttachMode.DRIVE, pending)

    def attach(self, row: SessionRow, mode: AttachMode, pending: bytes) -> None:
        """Hand the terminal to ``row`` (background task); say how it ended."""
        if self.state.suspended:
            return
        self.state.suspended = True      # set before the task starts: no double attach
        self.state.message = ""

        async def run() -> None:
            token = self.state.begin_busy("attaching")   # shown while the agent starts the viewer
            try:
                outcome = await self.attacher(row, mode, pending)
            except Exception as e:       # an escaping error would block on "Press ENTER"
                log.exception("attach failed", session=row.id)
                outcome = AttachOutcome("error", f"attach failed: {e}", broken=True)
            finally:
                self.state.suspended = False
                self.state.end_busy(token)
            log.info("attach ended", session=row.id, reason=outcome.reason, message=outcome.message)
            if outcome.broken:
                self.state.open(self.ops.notice(" Connection Lost " if outcome.reason == "broken"
                                             else " Attach Ended ", *outcome.lines(row.name),
                                             warning=True))
            else:
                self.state.message = outcome.summary(row.name)
            self.state.invalidate()

        self.ops.spawn(run())

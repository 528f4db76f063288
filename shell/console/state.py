"""ConsoleState: everything the console shows, read from the router's cache.

Handlers mutate this state and call ``invalidate()``; the layout draws from it. Nothing
here does I/O: :meth:`ConsoleState.table` reads the router's cached, synchronous views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shell.console.dialogs import Dialog
from shell.fleet.model import AgentRow, RouterAPI, SessionRow

__all__ = ["ConsoleState", "TableRow", "attention_first"]


def _haystack(r: SessionRow) -> str:
    return f"{r.name} {r.id} {r.agent_id} {r.dns_name} {r.error}".lower()


_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def _waited(r: SessionRow) -> datetime:
    """Sort key of a session needing input: the longest waiting first (no time: last)."""
    return r.activity_since or _FAR_FUTURE


def attention_first(rows: list[SessionRow]) -> list[SessionRow]:
    """Sessions needing input first (longest waiting first), then the others in their order."""
    waiting = sorted((r for r in rows if r.needs_input), key=_waited)
    return waiting + [r for r in rows if not r.needs_input]


@dataclass(frozen=True)
class TableRow:
    """One drawn row: the session plus its 1-based number in the unfiltered table."""

    number: int
    row: SessionRow
    agent_down: bool = False     # its agent is currently unreachable (cached data)
    agent_trouble: bool = False  # its agent answers but its engine is down or its disk nearly full


@dataclass
class ConsoleState:
    """The console's mutable state."""

    router: RouterAPI
    selected: int = 0                  # index into :meth:`visible`
    offset: int = 0                    # first visible row (scrolling)
    filter_text: str = ""
    filtering: bool = False            # the "/" prompt is taking keys
    input_only: bool = False           # "I": show only the sessions needing input
    dialogs: list[Dialog] = field(default_factory=list)
    busy: dict[int, str] = field(default_factory=dict)   # running operations by id
    message: str = ""                  # the last notice, shown above the menu bar
    suspended: bool = False            # the terminal is handed to a session
    invalidate: Callable[[], None] = lambda: None
    _busy_seq: int = 0

    @property
    def dialog(self) -> Dialog | None:
        """The dialog on top, if any (it takes every key)."""
        return self.dialogs[-1] if self.dialogs else None

    def open(self, dialog: Dialog) -> Dialog:
        """Show ``dialog`` on top of the others."""
        self.dialogs.append(dialog)
        self.invalidate()
        return dialog

    def close(self, dialog: Dialog | None = None) -> None:
        """Remove ``dialog`` (default: the top one)."""
        target = dialog or self.dialog
        if target in self.dialogs:
            self.dialogs.remove(target)
        self.invalidate()

    def replace(self, old: Dialog, new: Dialog) -> None:
        """Put ``new`` where ``old`` was (or on top when ``old`` is already gone)."""
        if old in self.dialogs:
            self.dialogs[self.dialogs.index(old)] = new
        else:
            self.dialogs.append(new)
        self.invalidate()

    def begin_busy(self, label: str) -> int:
        """Record a running operation; returns the token for :meth:`end_busy`."""
        self._busy_seq += 1
        self.busy[self._busy_seq] = label
        self.invalidate()
        return self._busy_seq

    def end_busy(self, token: int) -> None:
        """Forget a finished operation."""
        self.busy.pop(token, None)
        self.invalidate()

    def agents(self) -> list[AgentRow]:
        """The registered agents (cached)."""
        return self.router.agents()

    def table(self) -> list[TableRow]:
        """Every row: the router's rows plus one marker row per unreachable agent."""
        rows = attention_first(self.router.rows())
        agents = self.router.agents()
        down = {a.agent_id: a for a in agents if not a.reachable}
        trouble = {a.agent_id for a in agents if a.problems}
        marked = {r.agent_id for r in rows if r.placeholder}
        out = [TableRow(i + 1, r, r.agent_id in down and not r.placeholder,
                        r.agent_id in trouble and not r.placeholder) for i, r in enumerate(rows)]
        for agent_id, agent in sorted(down.items()):
            if agent_id not in marked:
                placeholder = SessionRow(id="", name="", agent_id=agent_id, created_at=None,
                                         last_accessed=None, placeholder=True,
                                         error=agent.last_error or "unreachable")
                out.append(TableRow(len(out) + 1, placeholder))
        return out

    def visible(self) -> list[TableRow]:
        """The rows that match the filter (case-insensitive, name/id/agent/DNS/error) and, with
        :attr:`input_only`, need input."""
        rows = self.table()
        if self.input_only:
            rows = [t for t in rows if t.row.needs_input]
        needle = self.filter_text.strip().lower()
        if not needle:
            return rows
        return [t for t in rows if needle in _haystack(t.row)]

    def waiting(self) -> list[SessionRow]:
        """Every session needing input, fleet-wide, the longest waiting first."""
        return [r for r in attention_first(self.router.rows()) if r.needs_input]

    def jump_to_waiting(self) -> SessionRow | None:
        """Select the session that has waited longest (clearing a filter that hides it)."""
        waiting = self.waiting()
        if not waiting:
            return None
        target = waiting[0]
        if not any(t.row.id == target.id for t in self.visible()):
            self.filter_text = ""
        for i, t in enumerate(self.visible()):
            if t.row.id == target.id:
                self.selected = i
        self.invalidate()
        return target

    def clamp(self, count: int | None = None) -> None:
        """Keep the selection inside the visible rows."""
        n = len(self.visible()) if count is None else count
        self.selected = max(0, min(self.selected, n - 1)) if n else 0

    def current(self) -> SessionRow | None:
        """The selected session (None when the table is empty)."""
        rows = self.visible()
        self.clamp(len(rows))
        return rows[self.selected].row if rows else None

    def move(self, delta: int) -> None:
        """Move the selection by ``delta`` rows (no wrap)."""
        self.selected += delta
        self.clamp()
        self.invalidate()

    def by_number(self, number: int) -> SessionRow | None:
        """The row shown with ``#`` = ``number`` (digit quick-attach)."""
        for t in self.table():
            if t.number == number:
                return t.row
        return None

"""State -> containers: title bar, table, status line, menu bar and the dialog float.

The table is one ``FormattedTextControl`` over the visible slice only, so the cost
of a redraw does not grow with the number of sessions (peers-and-pitfalls §B.5).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prompt_toolkit.application import get_app
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import (
    ConditionalContainer,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    Window,
)

from common.domain import last_known
from common.text import safe_display
from shell.console.dialogs import render_dialog
from shell.console.state import ConsoleState
from shell.console.table import columns_for, format_header, format_row, menu_lines
from shell.fleet.model import SessionRow

__all__ = ["CHROME_ROWS", "MESSAGE_SECONDS", "StatusLine", "agent_notice", "build_layout", "draw_table",
           "load_average", "title_text"]

CHROME_ROWS = 5      # title, blank, header, separator, status line (and the menu bar's lines)
MESSAGE_SECONDS = 15.0
SPINNER = "|/-\\"


def load_average() -> str:
    """``load1 load5 load15`` from /proc/loadavg, or "" when unreadable."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def _size() -> tuple[int, int]:
    size = get_app().output.get_size()
    return size.columns, size.rows


def title_text(state: ConsoleState, width: int, now: float | None = None) -> str:
    """``convocate`` on the left; busy marker, agent health, load and clock on the right."""
    now = time.time() if now is None else now
    parts = []
    waiting = len(state.waiting())
    if waiting:
        parts.append(f"{waiting} need{'s' if waiting == 1 else ''} input")
    if state.busy:
        spin = SPINNER[int(now * 4) % len(SPINNER)]
        parts.append(f"{spin} {', '.join(sorted(set(state.busy.values())))}...")
    parts.append(agent_count(state))
    load = load_average()
    if load:
        parts.append(load)
    parts.append(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)))
    right = "  ".join(parts) + " "
    left = " convocate"
    gap = width - len(left) - len(right)
    if gap < 1:  # too narrow: the load and the clock give way, the counts stay
        right = "  ".join(parts[: -2 if load else -1]) + " "
        gap = width - len(left) - len(right)
    return left + " " * gap + right if gap >= 1 else left.ljust(width)


def agent_count(state: ConsoleState) -> str:
    """``agents 3 up, 1 DOWN, 1 engine down, 1 disk low`` (only the parts that are not zero)."""
    agents = state.agents()
    down = sum(1 for a in agents if not a.reachable)
    engine = sum(1 for a in agents if a.reachable and a.health is not None and not a.health.engine_up)
    disk = sum(1 for a in agents if a.reachable and a.health is not None and a.health.disk_low)
    text = f"agents {len(agents) - down} up"
    for count, what in ((down, "DOWN"), (engine, "engine down"), (disk, "disk low")):
        if count:
            text += f", {count} {what}"
    return text


def _title(state: ConsoleState) -> StyleAndTextTuples:
    width, _ = _size()
    return [("class:title", title_text(state, width))]


def _header() -> StyleAndTextTuples:
    width, _ = _size()
    return [("class:header", format_header(columns_for(width))[:width])]


def draw_table(state: ConsoleState) -> StyleAndTextTuples:
    """The visible slice of the table, one styled line per row (highlighted: needs input, selected)."""
    width, height = _size()
    rows = state.visible()
    state.clamp(len(rows))
    room = max(1, height - CHROME_ROWS - len(menu_lines(width)))
    if state.selected < state.offset:
        state.offset = state.selected
    elif state.selected >= state.offset + room:
        state.offset = state.selected - room + 1
    state.offset = max(0, min(state.offset, max(0, len(rows) - room)))
    if not rows:
        text = ("  No sessions match the filter." if state.filter_text
                else "  No session needs input." if state.input_only
                else "  No sessions. Press (N) to create one.")
        return [("class:row.empty", text)]
    cols = columns_for(width)
    out: StyleAndTextTuples = []
    for i in range(state.offset, min(len(rows), state.offset + room)):
        t = rows[i]
        line = format_row(t, cols)[:width].ljust(width)
        style = "class:row"
        if t.row.placeholder:
            style = "class:row.placeholder"
        elif t.agent_down or t.row.unknown:
            style = "class:row.down"
        elif t.row.needs_input:
            style = "class:row.input"
        elif t.agent_trouble:
            style = "class:row.trouble"
        if i == state.selected:
            style += " class:row.selected"
        out += [(style, line), ("", "\n")]
    out.pop()
    return out


def agent_notice(state: ConsoleState) -> str:
    """The first notice of any agent (``+N more`` when there are several).

    Notices come from the shared view (links, engine, disk, a mass-death alarm first);
    an agent's engine or disk problems seen by Ping count too when the view lacks them.
    """
    notices = [f"{a.agent_id}: {n}" for a in state.agents() for n in a.notices]
    notices += [f"{a.agent_id}: {p}" for a in state.agents() for p in a.problems
                if p not in a.notices]
    if not notices:
        return ""
    more = f"  (+{len(notices) - 1} more)" if len(notices) > 1 else ""
    return f"! {notices[0]}{more}"


class StatusLine:
    """The line above the menu: the filter prompt, the last message, or an agent notice.

    A message gives way to an agent notice after ``MESSAGE_SECONDS``, so a link that
    breaks in one direction shows even when the operator did something a while ago.
    """

    def __init__(self, state: ConsoleState) -> None:
        self.state = state
        self._seen = ""
        self._since = 0.0
        self._notice = ""
        self._notice_since = 0.0

    def __call__(self) -> StyleAndTextTuples:
        state = self.state
        width, _ = _size()
        if state.filtering:
            return [("class:status.filter", f" /{state.filter_text}"), ("reverse", " ")]
        if state.filter_text or state.input_only:
            what = " and ".join(([f'"{state.filter_text}"'] if state.filter_text else [])
                                + (["needs input"] if state.input_only else []))
            text = f" filter: {safe_display(what)}   (/ or I to change, Esc to clear)"
            return [("class:status.filter", text[:width])]
        now = time.monotonic()
        if state.message != self._seen:
            self._seen, self._since = state.message, now
        notice = agent_notice(state)
        if notice != self._notice:  # a new notice (a mass death, an engine down) shows at once
            self._notice, self._notice_since = notice, now
        if notice and (not state.message or now - self._since > MESSAGE_SECONDS
                       or self._notice_since >= self._since):
            return [("class:status.notice", f" {safe_display(notice)}"[:width])]
        if not state.message or now - self._since > MESSAGE_SECONDS:
            row = state.current()
            if row is not None and row.unknown and not row.placeholder:
                text = f' session "{row.name}": state unknown, {last_known(row.known_at)}'
                return [("class:status", safe_display(text)[:width])]
            if row is not None and row.needs_input:
                return [("class:status.input", safe_display(waiting_text(row))[:width])]
        return [("class:status", f" {safe_display(state.message)}"[:width])]


def waiting_text(row: SessionRow) -> str:
    """The status line for a selected session needing input: why, and the CLI's words."""
    why = {"permission": "a permission", "question": "a question", "idle_prompt": "the prompt"}
    text = f' "{row.name}" waits for {why.get(row.activity_reason, "input")}'
    if row.activity_message:
        text += f": {row.activity_message}"
    return text + "  (P: peek and reply, Enter: attach)"


def _menu() -> StyleAndTextTuples:
    width, _ = _size()
    return [("class:menu", "\n".join((" " + line)[:width] for line in menu_lines(width)))]


def _menu_height() -> Dimension:
    width, _ = _size()
    return Dimension.exact(len(menu_lines(width)))


def _line(get: Callable[[], StyleAndTextTuples], style: str = "") -> Window:
    return Window(FormattedTextControl(get), height=1, style=style)


def build_layout(state: ConsoleState) -> Layout:
    """The whole screen for ``state``."""
    box: dict[str, int] = {"w": 20, "h": 3}

    def dialog_text() -> StyleAndTextTuples:
        dialog = state.dialog
        if dialog is None:
            return []
        width, height = _size()
        dialog.fit(width, height)
        frags, box["w"], box["h"] = render_dialog(dialog, width)
        return frags

    def dialog_width() -> Dimension:
        dialog_text()
        return Dimension.exact(box["w"])

    def dialog_height() -> Dimension:
        dialog_text()
        return Dimension.exact(box["h"])

    dialog_window = Window(FormattedTextControl(dialog_text), width=dialog_width,
                           height=dialog_height, dont_extend_width=True, dont_extend_height=True)
    body = HSplit([
        _line(lambda: _title(state), "class:title"),
        Window(height=1),
        _line(_header),
        Window(height=1, char="\u2500", style="class:separator"),
        Window(FormattedTextControl(lambda: draw_table(state)), wrap_lines=False),
        _line(StatusLine(state)),
        Window(FormattedTextControl(_menu), height=_menu_height, style="class:menu"),
    ])
    root = FloatContainer(body, floats=[
        Float(ConditionalContainer(dialog_window, filter=Condition(lambda: state.dialog is not None))),
    ])
    return Layout(root)

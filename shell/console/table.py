"""The session table as text: columns that fit the screen, one line per row.

Full width is 138 columns; on narrower screens the Session ID shrinks to its first 8
characters (110 columns, the test terminal), then the dates lose their time (98), then
Name and Agent narrow (90, 84), then Created goes (71). The status letter stays the
last column and is visible down to 71 columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.text import safe_display
from shell.console.state import TableRow

__all__ = ["Column", "columns_for", "format_header", "format_row", "menu_text"]

_SEP = " | "
MENU_ITEMS = ("(N)ew", "(C)lone", "(E)dit", "(B)ackground", "(D)elete", "(K)ill", "(O)verride",
              "(S)ettings", "(R)estart", "(Q)uit", "/ Filter", "? Help")


@dataclass(frozen=True)
class Column:
    """A column title and its width."""

    key: str
    title: str
    width: int


def _layout(id_w: int, date_w: int, name_w: int = 20, agent_w: int = 12) -> list[Column]:
    last = Column("last", "Last Accessed", max(date_w, 13)) if date_w > 10 else Column("last", "Accessed", 10)
    return [
        Column("num", "#", 4), Column("name", "Name", name_w), Column("agent", "Agent", agent_w),
        Column("id", "Session ID" if id_w >= 10 else "ID", id_w), Column("created", "Created", date_w),
        last, Column("port", "Port/Proto", 10), Column("status", "S", 1),
    ]


def _total(cols: list[Column]) -> int:
    return 2 + sum(c.width for c in cols) + len(_SEP) * (len(cols) - 1)


_TIERS = ((36, 16, 20, 12), (8, 16, 20, 12), (8, 10, 20, 12), (8, 10, 14, 10), (8, 10, 10, 8))


def columns_for(width: int) -> list[Column]:
    """The widest layout that fits ``width`` (the narrowest one when none does)."""
    for tier in _TIERS:
        cols = _layout(*tier)
        if _total(cols) <= width:
            return cols
    return [c for c in _layout(*_TIERS[-1]) if c.key != "created"]


def _fit(text: str, width: int) -> str:
    text = safe_display(text)  # names and errors come from agents and their containers
    if len(text) > width:
        text = text[: width - 3] + "..." if width > 3 else text[:width]
    return text.ljust(width)


def _date(value: datetime | None, width: int) -> str:
    if value is None:
        return "-"
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M" if width >= 16 else "%Y-%m-%d")


def format_header(cols: list[Column]) -> str:
    """The yellow header line."""
    return "  " + _SEP.join(c.title.ljust(c.width) for c in cols)


def format_row(t: TableRow, cols: list[Column]) -> str:
    """One table line for ``t`` (placeholders span Name..Session ID with the error)."""
    r = t.row
    if r.placeholder:
        values = {"num": str(t.number), "name": "[agent unreachable]", "agent": r.agent_id,
                  "id": f"agent-unreachable:{r.agent_id}" if cols[3].width >= 36 else "-",
                  "created": "", "last": "",
                  "port": "", "status": "-"}
        line = "  " + _SEP.join(_fit(values[c.key], c.width) for c in cols[:4])
        return f"{line}{_SEP}{safe_display(r.error or 'unreachable')}"
    port = f"{r.port}/{r.protocol or 'tcp'}" if r.port else "-"
    status = "?" if t.agent_down else r.status_letter  # an unreachable agent's rows: unknown
    values = {
        "num": str(t.number), "name": r.name, "agent": r.agent_id or "(local)",
        "id": r.id, "port": port, "status": status,
    }
    cells = []
    for c in cols:
        if c.key in ("created", "last"):
            text = _date(r.created_at if c.key == "created" else r.last_accessed, c.width)
        else:
            text = values[c.key]
        cells.append(safe_display(text)[: c.width].ljust(c.width) if c.key == "id" else _fit(text, c.width))
    return "  " + _SEP.join(cells)


def menu_text(width: int) -> str:
    """The key menu, with `` | `` separators when they fit, else single spaces."""
    wide = " | ".join(MENU_ITEMS)
    return wide if len(wide) + 1 <= width else " ".join(MENU_ITEMS)

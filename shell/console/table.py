"""The session table as text: columns that give way by priority, one line per row.

Display order: ``# | Name | Activity | Agent | Session ID | Created | Accessed |
Port/Proto | S``. On a narrow screen the columns give way in priority order: Name,
Activity and the status letter always show; then Agent; then Accessed, Port/Proto,
Created and the short Session ID. Space left over widens Name (to 32), then shows the
full Session ID, then widens Name up to the longest name allowed. Times are relative
("3m ago"), activity carries its age ("input 3m", "working 10s", "idle 14h"). At 80
columns a row shows #, a 28-character Name, Activity, Agent, Accessed and the status
letter; at 110 every column shows (a 23-character Name, the ID's first 8 characters); at
147 and more the full Session ID too. The status letter stays the last column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from common.domain import ActivityState
from common.session_rules import MAX_NAME_BYTES
from common.text import safe_display
from shell.console.state import TableRow

__all__ = ["MENU_ITEMS", "Column", "activity_text", "age", "ago", "columns_for", "format_header",
           "format_row", "menu_lines"]

_SEP = " | "
_PREFIX = 2
MENU_ITEMS = ("(N)ew", "(C)lone", "(E)dit", "(B)ackground", "(D)elete", "(K)ill", "(O)verride",
              "(S)ettings", "(R)estart", "(P)eek", "(W)aiting", "(I)nput only", "(Q)uit", "/ Filter",
              "? Help")

NAME_MIN = 8          # the narrowest Name (screens below ~60 columns)
NAME_COMFORT = 20     # Name's width before lower-priority columns are added
NAME_WIDE = 32        # Name grows to this before the full Session ID shows


@dataclass(frozen=True)
class Column:
    """A column key, title and width."""

    key: str
    title: str
    width: int


# key -> (title, width); the display order is this order.
_SPECS: dict[str, tuple[str, int]] = {
    "num": ("#", 3), "name": ("Name", NAME_COMFORT), "activity": ("Activity", 11),
    "agent": ("Agent", 12), "id": ("ID", 8), "created": ("Created", 8), "last": ("Accessed", 8),
    "port": ("Port/Proto", 10), "status": ("S", 1),
}
_ALWAYS = ("num", "name", "activity", "status")
_PRIORITY = ("agent", "last", "port", "created", "id")   # added in this order while they fit
_FULL_ID = 36


def _total(widths: dict[str, int]) -> int:
    return _PREFIX + sum(widths.values()) + len(_SEP) * (len(widths) - 1)


def columns_for(width: int) -> list[Column]:
    """The columns for a ``width``-column screen (see the module docstring)."""
    widths = {k: _SPECS[k][1] for k in _ALWAYS}
    for key in _PRIORITY:   # in priority order: a column that does not fit stops the rest
        trial = {**widths, key: _SPECS[key][1]}
        if _total(trial) > width:
            break
        widths = trial
    spare = width - _total(widths)
    if spare < 0:   # not even the essentials at NAME_COMFORT: Name gives way, down to NAME_MIN
        widths["name"] = max(NAME_MIN, widths["name"] + spare)
        spare = 0
    grow = min(spare, max(0, NAME_WIDE - widths["name"]))
    widths["name"] += grow
    spare -= grow
    if "id" in widths and spare >= _FULL_ID - widths["id"]:
        spare -= _FULL_ID - widths["id"]
        widths["id"] = _FULL_ID
    widths["name"] += min(spare, MAX_NAME_BYTES - widths["name"])
    return [Column(key, "Session ID" if key == "id" and widths[key] >= _FULL_ID else title, widths[key])
            for key, (title, _) in _SPECS.items() if key in widths]


def _fit(text: str, width: int) -> str:
    text = safe_display(text)  # names and errors come from agents and their containers
    if len(text) > width:
        text = text[: width - 3] + "..." if width > 3 else text[:width]
    return text.ljust(width)


def age(seconds: float) -> str:
    """A compact duration: ``10s``, ``3m``, ``14h``, ``5d``, ``2y`` (negative counts as 0)."""
    s = max(0, int(seconds))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size * (2 if unit == "d" else 1):   # "36h" reads better than "1d" up to 48 h
            return f"{s // size}{unit}"
    return f"{s}s"


def ago(value: datetime | None, now: datetime) -> str:
    """``3m ago`` (``-`` for no time, ``now`` for under a second or a clock ahead of ours)."""
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    return "now" if seconds < 1 else f"{age(seconds)} ago"


_ACTIVITY_WORDS = {ActivityState.NEEDS_INPUT: "input", ActivityState.WORKING: "working",
                   ActivityState.IDLE: "idle", ActivityState.STOPPED: "stopped",
                   ActivityState.UNKNOWN: "unknown"}


def activity_text(activity: str, since: datetime | None, now: datetime) -> str:
    """``input 3m``, ``working 10s``, ``idle 14h``; ``stopped``/``unknown`` without an age; ``-`` for none."""
    if not activity:
        return "-"
    try:
        word = _ACTIVITY_WORDS[ActivityState(activity)]
    except ValueError:
        word = "unknown"
    if since is None or word in ("stopped", "unknown"):
        return word
    return f"{word} {age((now - since).total_seconds())}"


def format_header(cols: list[Column]) -> str:
    """The yellow header line."""
    return " " * _PREFIX + _SEP.join(c.title.ljust(c.width) for c in cols)


def format_row(t: TableRow, cols: list[Column], now: datetime | None = None) -> str:
    """One table line for ``t`` (a placeholder row shows the agent and its error after Name)."""
    now = now or datetime.now(UTC)
    r = t.row
    if r.placeholder:
        values = {"num": str(t.number), "name": "[agent unreachable]", "agent": r.agent_id,
                  "status": "-"}
        head = [c for c in cols if c.key in ("num", "name", "agent")]
        line = " " * _PREFIX + _SEP.join(_fit(values[c.key], c.width) for c in head)
        return f"{line}{_SEP}{safe_display(r.error or 'unreachable')}"
    port = f"{r.port}/{r.protocol or 'tcp'}" if r.port else "-"
    status = "?" if t.agent_down else r.status_letter  # an unreachable agent's rows: unknown
    values = {
        "num": str(t.number), "name": r.name, "agent": r.agent_id or "(local)",
        "activity": activity_text(r.activity, r.activity_since, now),
        "created": ago(r.created_at, now), "last": ago(r.last_accessed, now),
        "id": r.id, "port": port, "status": status,
    }
    cells = [safe_display(values[c.key])[: c.width].ljust(c.width) if c.key == "id"
             else _fit(values[c.key], c.width) for c in cols]
    return " " * _PREFIX + _SEP.join(cells)


def menu_lines(width: int) -> list[str]:
    """The key menu in as few lines as it takes: `` | `` separators when one line holds them,
    else single spaces, else wrapped between keys (a key is never cut)."""
    room = max(1, width - 1)
    wide = " | ".join(MENU_ITEMS)
    if len(wide) <= room:
        return [wide]
    lines = [""]
    for item in MENU_ITEMS:
        if lines[-1] and len(lines[-1]) + 1 + len(item) > room:
            lines.append("")
        lines[-1] = f"{lines[-1]} {item}" if lines[-1] else item
    return lines

"""Dialog models: notices, Y/N confirmations, choosers, and how a dialog is drawn.

A dialog is plain state plus a ``handle(key)`` method; key names are prompt_toolkit's
(``enter``, ``escape``, ``tab``, ``s-tab``, ``backspace``, ``up``, ``down``) or the
typed character. A dialog reports its outcome through ``on_done(outcome)``; the
controller (``shell.console.actions``) decides what happens next, so dialogs never do I/O.
Texts and hints follow v2.0.0 (inventory §3.4).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

from prompt_toolkit.formatted_text import StyleAndTextTuples

from common.text import safe_display

__all__ = [
    "MAX_ERROR",
    "ChoiceDialog",
    "ConfirmDialog",
    "Dialog",
    "NoticeDialog",
    "render_dialog",
    "wrap_error",
]

MAX_ERROR = 500
ERROR_MIN_WIDTH = 72
Outcome = Callable[[str], None]


def _ignore(_: str) -> None:
    """Default outcome handler: nothing to do."""


def wrap_error(text: str, width: int) -> list[str]:
    """Cap ``text`` at 500 characters and wrap it to ``width`` (long words hard-wrapped)."""
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 3] + "..."
    return textwrap.wrap(text, max(width, 10), break_long_words=True) or [""]


class Dialog:
    """Base dialog: a title, body lines, a hint, an optional error and a busy flag."""

    width = 60
    warning = False

    def __init__(self, title: str, hint: str, on_done: Outcome = _ignore) -> None:
        self.title = title
        self.hint = hint
        self.on_done = on_done
        self.error = ""
        self.busy = ""          # text shown while an operation for this dialog runs

    def body(self) -> list[StyleAndTextTuples]:
        """The lines between title and hint."""
        return []

    def fit(self, columns: int, rows: int) -> None:
        """Learn the screen's size before drawing (a pane that fills the screen uses it)."""

    def handle(self, key: str) -> None:
        """React to one key press."""

    def fail(self, message: str) -> None:
        """Show ``message`` in red inside the dialog (an operation failed)."""
        self.busy = ""
        self.error = message


class NoticeDialog(Dialog):
    """A message closed by any key (or only by the keys in ``close_keys``)."""

    def __init__(
        self,
        title: str,
        lines: Sequence[str],
        *,
        hint: str = "Press any key to continue",
        warning: bool = False,
        close_keys: Sequence[str] = (),
        extra_keys: Sequence[str] = (),
        on_done: Outcome = _ignore,
        width: int = 60,
    ) -> None:
        super().__init__(title, hint, on_done)
        self.lines = list(lines)
        self.warning = warning
        self.close_keys = tuple(close_keys)
        self.extra_keys = tuple(k.lower() for k in extra_keys)
        self.width = max(width, *(len(line) + 6 for line in self.lines), len(hint) + 6)

    def body(self) -> list[StyleAndTextTuples]:
        """The notice text."""
        style = "class:dialog.alert" if self.warning else ""
        return [[(style, line)] for line in self.lines]

    def handle(self, key: str) -> None:
        """Any key closes (or one of ``close_keys``); ``extra_keys`` are reported as such."""
        if key.lower() in self.extra_keys:
            self.on_done(key.lower())
        elif not self.close_keys or key in self.close_keys:
            self.on_done("close")


class ConfirmDialog(Dialog):
    """A Y/N question; Esc is No. Y reports ``yes`` and may show busy/error afterwards."""

    def __init__(self, title: str, lines: Sequence[str], on_done: Outcome,
                 *, hint: str = "(Y)es  (N)o") -> None:
        super().__init__(title, hint, on_done)
        self.lines = list(lines)
        self.width = max(48, *(len(line) + 6 for line in self.lines))

    def body(self) -> list[StyleAndTextTuples]:
        """The question."""
        return [[("", line)] for line in self.lines]

    def handle(self, key: str) -> None:
        """Y/y answers yes; N/n/Esc answers no; other keys are ignored (and while busy)."""
        if self.busy:
            return
        if key in ("y", "Y"):
            self.on_done("yes")
        elif key in ("n", "N", "escape"):
            self.on_done("no")


class ChoiceDialog(Dialog):
    """A list with a highlight: Up/Down move, Enter selects, Esc cancels; or a hotkey."""

    def __init__(
        self,
        title: str,
        options: Sequence[str],
        on_done: Outcome,
        *,
        hint: str = "Up/Down=Move  Enter=Select  Esc=Cancel",
        lines: Sequence[str] = (),
        hotkeys: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title, hint, on_done)
        self.options = list(options)
        self.lines = list(lines)
        self.hotkeys = {k.lower(): v for k, v in (hotkeys or {}).items()}
        self.index = 0
        longest = max([len(o) for o in self.options] + [len(x) for x in self.lines] + [0])
        self.width = max(48, longest + 8, len(hint) + 6)

    @property
    def selected(self) -> str:
        """The highlighted option."""
        return self.options[self.index]

    def body(self) -> list[StyleAndTextTuples]:
        """Leading text, then one line per option; the highlighted one reversed with ``> ``."""
        out: list[StyleAndTextTuples] = [[("", line)] for line in self.lines]
        for i, option in enumerate(self.options):
            if i == self.index:
                out.append([("class:dialog.selected", f"> {option}")])
            else:
                out.append([("", f"  {option}")])
        return out

    def handle(self, key: str) -> None:
        """Move, select, cancel, or pick by hotkey."""
        if self.busy:
            return
        if key == "up":
            self.index = max(0, self.index - 1)
        elif key == "down":
            self.index = min(len(self.options) - 1, self.index + 1)
        elif key == "enter" and self.options:
            self.on_done("select")
        elif key == "escape":
            self.on_done("cancel")
        elif key.lower() in self.hotkeys:
            self.index = self.options.index(self.hotkeys[key.lower()])
            self.on_done("select")


def _center(text: str, width: int) -> str:
    return text[:width].center(width)


def render_dialog(dialog: Dialog, max_width: int) -> tuple[StyleAndTextTuples, int, int]:
    """Draw ``dialog`` as a box.

    Args:
        dialog: the dialog to draw.
        max_width: the screen width; the box stays 2 columns narrower.

    Returns:
        (fragments, width, height) of the box.
    """
    width = dialog.width
    if dialog.error:
        width = max(width, ERROR_MIN_WIDTH)
    if dialog.busy:
        width = max(width, len(dialog.busy) + 6)
    width = max(20, min(width, max_width - 2))
    inner = width - 4
    base = "class:dialog.warning" if dialog.warning else "class:dialog"
    lines: list[StyleAndTextTuples] = [[("class:dialog.title", _center(dialog.title, width - 2))], []]
    lines.extend(dialog.body())
    if dialog.busy:
        lines += [[], [("class:dialog.busy", dialog.busy)]]
    if dialog.error:
        lines.append([])
        lines.extend([("class:dialog.error", part)] for part in wrap_error(dialog.error, inner))
    lines += [[], [("class:dialog.hint", _center(dialog.hint, width - 2))]]
    out: StyleAndTextTuples = []
    for i, frags in enumerate(lines):
        pad = 1 if i in (0, len(lines) - 1) else 2
        out.append((base, " " * pad))
        room = width - 2 * pad
        for frag in frags:
            style, text = frag[0], frag[1]
            if room <= 0:
                break
            piece = safe_display(text)[:room]  # names and errors may come from agents
            out.append((f"{base} {style}".strip(), piece))
            room -= len(piece)
        out.append((base, " " * (max(room, 0) + pad)))
        out.append(("", "\n"))
    if out:
        out.pop()
    return out, width, len(lines)

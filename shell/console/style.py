"""The console's colours (v2.0.0: blue bars, yellow headers, dark blue dialogs)."""

from __future__ import annotations

from prompt_toolkit.styles import Style

__all__ = ["console_style"]


def console_style() -> Style:
    """The style sheet the layout's class names refer to."""
    return Style.from_dict({
        "title": "bg:ansiblue fg:ansiwhite",
        "title.busy": "bg:ansiblue fg:ansiyellow bold",
        "header": "fg:ansiyellow bold",
        "separator": "fg:ansigray",
        "row.selected": "reverse",
        "row.down": "fg:ansigray",
        "row.trouble": "fg:ansiyellow",
        "row.placeholder": "fg:ansired",
        "row.input": "fg:ansimagenta bold",
        "peek.screen": "bg:ansiblack fg:ansiwhite",
        "row.empty": "",
        "status": "fg:ansicyan",
        "status.filter": "fg:ansiyellow",
        "status.notice": "fg:ansired bold",
        "status.input": "fg:ansimagenta bold",
        "menu": "bg:ansiblue fg:ansiyellow",
        "dialog": "bg:#000087 fg:ansiwhite",
        "dialog.warning": "bg:ansired fg:ansiyellow",
        "dialog.title": "bold",
        "dialog.hint": "",
        "dialog.alert": "fg:ansired bold",
        "dialog.error": "fg:#ff5f5f bold",
        "dialog.busy": "fg:ansiyellow",
        "dialog.label": "",
        "dialog.field": "underline",
        "dialog.cursor": "reverse",
        "dialog.selected": "reverse",
    })

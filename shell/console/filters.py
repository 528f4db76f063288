"""Conditions that decide which key bindings are live."""

from __future__ import annotations

from prompt_toolkit.filters import Condition, Filter

from shell.console.state import ConsoleState

__all__ = ["ConsoleFilters"]


class ConsoleFilters:
    """The console's modes: a dialog has the keys, the filter prompt has them, or the list."""

    def __init__(self, state: ConsoleState) -> None:
        self.has_dialog: Filter = Condition(lambda: state.dialog is not None)
        self.filtering: Filter = Condition(lambda: state.dialog is None and state.filtering)
        self.in_list: Filter = Condition(
            lambda: state.dialog is None and not state.filtering and not state.suspended)

"""Key bindings: the session list, the filter prompt, and whatever dialog is on top.

Handlers only mutate state (through :class:`shell.console.actions.Console`) and never await.
Enter and the digits take the keys already queued behind them (typeahead) and pass
them to the session, so ``Enter`` + ``ls`` typed in one burst reaches the shell inside.
"""

from __future__ import annotations

from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent, merge_key_bindings
from prompt_toolkit.key_binding.key_bindings import KeyBindingsBase
from prompt_toolkit.keys import Keys

from shell.console.actions import Console
from shell.console.filters import ConsoleFilters

__all__ = ["load_console_bindings", "take_typeahead"]

_DIALOG_KEYS = {
    "enter": "enter", "escape": "escape", "tab": "tab", "s-tab": "s-tab",
    "backspace": "backspace", "up": "up", "down": "down",
}


def take_typeahead(event: KeyPressEvent) -> bytes:
    """Remove and return the keys queued after the current one (for the session)."""
    return "".join(kp.data for kp in event.app.key_processor.empty_queue()).encode()


def _list_bindings(console: Console, filters: ConsoleFilters) -> KeyBindings:
    kb = KeyBindings()
    state = console.state
    on = filters.in_list

    @kb.add("up", filter=on)
    def _up(_event: KeyPressEvent) -> None:
        state.move(-1)

    @kb.add("down", filter=on)
    def _down(_event: KeyPressEvent) -> None:
        state.move(1)

    @kb.add("enter", filter=on)
    def _enter(event: KeyPressEvent) -> None:
        console.enter(take_typeahead(event))

    for digit in "123456789":
        @kb.add(digit, filter=on)
        def _digit(event: KeyPressEvent) -> None:
            console.quick_attach(int(event.data), take_typeahead(event))

    actions = {
        "n": console.new, "c": console.clone, "e": console.edit, "b": console.background,
        "d": console.delete, "k": console.kill, "o": console.override, "s": console.settings,
        "r": console.restart, "q": console.quit, "?": console.help,
        "p": console.peek, "w": console.jump_waiting, "i": console.toggle_input_only,
    }
    for key, action in actions.items():
        for variant in {key, key.upper()}:
            kb.add(variant, filter=on)(lambda _event, act=action: act())

    @kb.add("escape", filter=on)
    def _escape(_event: KeyPressEvent) -> None:
        if state.filter_text or state.input_only:
            state.filter_text, state.input_only = "", False
            state.invalidate()
        else:
            console.quit()

    @kb.add("c-c", filter=on)
    def _interrupt(_event: KeyPressEvent) -> None:
        console.quit()

    @kb.add("/", filter=on)
    def _filter(_event: KeyPressEvent) -> None:
        state.filtering = True
        state.invalidate()

    return kb


def _filter_bindings(console: Console, filters: ConsoleFilters) -> KeyBindings:
    kb = KeyBindings()
    state = console.state
    on = filters.filtering

    @kb.add("enter", filter=on)
    def _done(_event: KeyPressEvent) -> None:
        state.filtering = False
        state.selected = 0
        state.invalidate()

    @kb.add("escape", filter=on)
    def _cancel(_event: KeyPressEvent) -> None:
        state.filtering, state.filter_text, state.selected = False, "", 0
        state.invalidate()

    @kb.add("backspace", filter=on)
    def _back(_event: KeyPressEvent) -> None:
        state.filter_text = state.filter_text[:-1]
        state.selected = 0
        state.invalidate()

    @kb.add(Keys.Any, filter=on)
    def _type(event: KeyPressEvent) -> None:
        if len(event.data) == 1 and event.data.isprintable():
            state.filter_text += event.data
            state.selected = 0
            state.invalidate()

    return kb


def _dialog_bindings(console: Console, filters: ConsoleFilters) -> KeyBindings:
    kb = KeyBindings()
    state = console.state
    on = filters.has_dialog

    def send(key: str) -> None:
        dialog = state.dialog
        if dialog is None:
            return
        if dialog.busy:
            # A slow agent never holds the console: Esc hides the dialog, the operation
            # goes on in the background and reports in the status line or an error notice.
            if key == "escape":
                state.close(dialog)
                state.message = f"{dialog.busy.split('...')[0]} continues in the background"
            return
        dialog.handle(key)
        state.invalidate()

    for binding, name in _DIALOG_KEYS.items():
        kb.add(binding, filter=on)(lambda _event, key=name: send(key))

    @kb.add(Keys.Any, filter=on)
    def _any(event: KeyPressEvent) -> None:
        if len(event.data) == 1 and event.data.isprintable():
            send(event.data)
        else:
            key = event.key_sequence[0].key
            send(key.value if isinstance(key, Keys) else key)

    return kb


def load_console_bindings(console: Console, filters: ConsoleFilters) -> KeyBindingsBase:
    """Every binding of the console, each live only in its mode.

    Args:
        console: the controller the handlers call.
        filters: the mode conditions.

    Returns:
        The merged key bindings for the Application.
    """
    return merge_key_bindings([
        _list_bindings(console, filters),
        _filter_bindings(console, filters),
        _dialog_bindings(console, filters),
    ])

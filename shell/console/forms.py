"""The session form (create / edit) and the clone dialog, with v2.0.0's field rules.

Fields (inventory §3.4): Name (any character, at most 64), Protocol (t=tcp, u=udp,
Space toggles), Port (digits only, at most 5), DNS Name (``a-z 0-9 - .``, upper case
lower-cased). Tab / Shift+Tab cycle the fields and clear the error; Enter validates
name -> protocol -> port -> DNS and on the first failure shows the message and moves
the focus to that field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prompt_toolkit.formatted_text import StyleAndTextTuples

from common.errors import InvalidArgumentError
from shell.console.dialogs import Dialog, Outcome
from shell.console.validation import (
    MAX_DNS,
    MAX_NAME,
    validate_dns_name,
    validate_name,
    validate_port_field,
    validate_protocol,
)

__all__ = ["CloneDialog", "FormValues", "SessionForm", "TextField"]

_LABEL_COL = 12


@dataclass(frozen=True)
class FormValues:
    """What a valid form submits."""

    name: str
    protocol: str
    port: int          # 0 none, -1 auto, else explicit
    dns_name: str


class TextField:
    """A one-line input: typed characters pass ``accept`` (which may rewrite them)."""

    def __init__(self, label: str, value: str, max_len: int, width: int,
                 accept: Callable[[str], str | None] = lambda ch: ch) -> None:
        self.label = label
        self.value = value
        self.max_len = max_len
        self.width = width
        self.accept = accept

    def key(self, key: str) -> None:
        """Backspace deletes; a printable character is appended if accepted."""
        if key == "backspace":
            self.value = self.value[:-1]
        elif len(key) == 1 and key.isprintable() and len(self.value) < self.max_len:
            ch = self.accept(key)
            if ch:
                self.value += ch

    def render(self, focused: bool) -> StyleAndTextTuples:
        """The field: its tail when long, a reversed cursor cell when focused."""
        visible = self.value[-(self.width - 1):] if len(self.value) >= self.width else self.value
        frags: StyleAndTextTuples = [("class:dialog.field", visible)]
        if focused:
            frags.append(("class:dialog.cursor", " "))
        pad = self.width - len(visible) - (1 if focused else 0)
        frags.append(("class:dialog.field", " " * max(pad, 0)))
        return frags


def _dns_char(ch: str) -> str | None:
    low = ch.lower()
    return low if low.isascii() and (low.isalnum() or low in "-.") else None


class SessionForm(Dialog):
    """Create or edit a session."""

    width = 68

    def __init__(self, title: str, on_done: Outcome, *, name: str = "", protocol: str = "tcp",
                 port: int = 0, dns_name: str = "") -> None:
        super().__init__(title, "Tab=Next  Enter=Save  Esc=Cancel", on_done)
        field_w = self.width - 5 - _LABEL_COL
        self.name = TextField("Name:", name, MAX_NAME, field_w)
        self.protocol = protocol or "tcp"
        self.port = TextField("Port:", str(port) if port > 0 else "", 5, 7,
                              lambda ch: ch if ch.isdigit() else None)
        self.dns = TextField("DNS Name:", dns_name, MAX_DNS, field_w, _dns_char)
        self.focus = 0
        self.values: FormValues | None = None

    def body(self) -> list[StyleAndTextTuples]:
        """Four labelled fields."""
        proto_frags: StyleAndTextTuples = [
            ("class:dialog.cursor" if self.focus == 1 else "class:dialog.field", self.protocol.ljust(5)),
            ("", "  (t=tcp, u=udp, Space toggles)"),
        ]
        port_frags = [*self.port.render(self.focus == 2), ("", "  (blank=none, 0=auto)")]
        rows = [
            ("Name:", self.name.render(self.focus == 0)),
            ("Protocol:", proto_frags),
            ("Port:", port_frags),
            ("DNS Name:", self.dns.render(self.focus == 3)),
        ]
        out: list[StyleAndTextTuples] = []
        for label, frags in rows:
            out.append([("class:dialog.label", label.ljust(_LABEL_COL)), *frags])
            out.append([])
        return out[:-1]

    def handle(self, key: str) -> None:
        """Edit the focused field, cycle focus, submit or cancel."""
        if self.busy:
            return
        if key == "escape":
            self.on_done("cancel")
        elif key == "tab":
            self.focus, self.error = (self.focus + 1) % 4, ""
        elif key == "s-tab":
            self.focus, self.error = (self.focus - 1) % 4, ""
        elif key == "enter":
            self._submit()
        elif self.focus == 1:
            if key in ("t", "T"):
                self.protocol = "tcp"
            elif key in ("u", "U"):
                self.protocol = "udp"
            elif key == " ":
                self.protocol = "udp" if self.protocol == "tcp" else "tcp"
        else:
            {0: self.name, 2: self.port, 3: self.dns}[self.focus].key(key)

    def _submit(self) -> None:
        steps: list[tuple[int, Callable[[], object]]] = [
            (0, lambda: validate_name(self.name.value)),
            (1, lambda: validate_protocol(self.protocol)),
            (2, lambda: validate_port_field(self.port.value)),
            (3, lambda: validate_dns_name(self.dns.value)),
        ]
        results: list[object] = []
        for focus, step in steps:
            try:
                results.append(step())
            except InvalidArgumentError as e:
                self.focus, self.error = focus, str(e)
                return
        name, protocol, port, dns = results
        self.values = FormValues(str(name), str(protocol), int(str(port)), str(dns))
        self.error = ""
        self.on_done("submit")


class CloneDialog(Dialog):
    """Clone a session under a new name."""

    width = 60

    def __init__(self, source_name: str, on_done: Outcome) -> None:
        super().__init__(" Clone Session ", "Enter=Clone  Esc=Cancel", on_done)
        self.source_name = source_name
        self.name = TextField("Name:", "", MAX_NAME, self.width - 5 - _LABEL_COL)
        self.value = ""

    def body(self) -> list[StyleAndTextTuples]:
        """Source and the new name."""
        return [
            [("class:dialog.label", "From:".ljust(_LABEL_COL)), ("", self.source_name[:40])],
            [],
            [("class:dialog.label", "Name:".ljust(_LABEL_COL)), *self.name.render(True)],
        ]

    def handle(self, key: str) -> None:
        """Type the name; Enter validates it; Esc cancels."""
        if self.busy:
            return
        if key == "escape":
            self.on_done("cancel")
        elif key == "enter":
            try:
                self.value = validate_name(self.name.value)
            except InvalidArgumentError as e:
                self.error = str(e)
                return
            self.error = ""
            self.on_done("submit")
        else:
            self.name.key(key)

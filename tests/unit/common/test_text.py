"""safe_display: control, line-breaking and bidi characters are shown, never obeyed."""

from __future__ import annotations

import logging

import pytest

from common.logging import configure_logging
from common.text import safe_display


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain name", "plain name"),
    ("Grüße ünd 日本", "Grüße ünd 日本"),
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),
    ("abc\u202edcba", "abc\\u202edcba"),
    ("\u2066x\u2069\u200b\u2028", "\\u2066x\\u2069\\u200b\\u2028"),
    ("\U000e0001", "\\U000e0001"),
    (None, ""),
])
def test_escapes(raw: str | None, shown: str) -> None:
    """Each dangerous character becomes its visible escape; printable text is unchanged."""
    assert safe_display(raw) == shown


def test_long_text_is_cut() -> None:
    """The result never exceeds the limit, escapes included."""
    assert safe_display("x" * 100, limit=10) == "xxxxxxx..."
    assert len(safe_display("\x1b" * 100, limit=10)) == 10


def test_console_log_lines_escape_hostile_values(capsys: pytest.CaptureFixture[str]) -> None:
    """A terminal log line shows an agent-supplied ESC, newline and bidi override escaped."""
    try:
        configure_logging("cli", level="INFO", json=False)
        # A library's message carries the peer's text in the event itself, which is never repr-ed.
        logging.getLogger("asyncssh").warning("peer said %s", "h\x1b]0;x\x07\nforged line\u202e")
        err = capsys.readouterr().err
    finally:
        configure_logging("cli", level="DEBUG", json=False)  # as tests/conftest.py sets it
    assert "\x1b]0" not in err
    assert "\u202e" not in err
    assert err.count("\n") == 1
    assert "peer said h\\x1b]0;x\\x07\\nforged line\\u202e" in err

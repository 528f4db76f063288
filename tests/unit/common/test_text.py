"""safe_display: control, line-breaking and bidi characters are shown, never obeyed."""

from __future__ import annotations

import pytest

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

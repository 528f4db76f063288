"""Text from outside this process made safe to show: one rule for every screen and log.

Names, host names, versions, errors and event attributes come from agents and from the
session containers behind them: untrusted. :func:`safe_display` shows every character
that could move the cursor, start a terminal escape sequence, break a line or reorder
what follows (C0 and C1 controls, DEL, line and paragraph separators, bidi overrides
and isolates and the other Unicode format characters) as a visible escape instead:
``\\x1b``, ``\\n``, ``\\u202e``. Printable text, including non-ASCII letters, is kept.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_DISPLAY", "safe_display"]

MAX_DISPLAY = 4096
# Categories shown escaped: controls, format characters (bidi, zero-width, ...),
# line/paragraph separators, surrogates, private use and unassigned code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class _Table(dict[int, str]):
    """``str.translate`` table filled on first sight of each code point."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        value = _escape(ch) if unicodedata.category(ch) in _ESCAPED_CATEGORIES else ch
        if len(self) < 65536:  # bounded: a flood of distinct code points cannot grow it forever
            self[code] = value
        return value


_TABLE = _Table()


def safe_display(text: object, limit: int = MAX_DISPLAY) -> str:
    """``text`` (``str()`` of it) with every non-printing character escaped, at most ``limit`` chars.

    Args:
        text: what to show; ``None`` shows as ``""``.
        limit: the longest result; longer ones end in ``...``.

    Returns:
        One line that draws exactly as the characters it shows.
    """
    if text is None:
        return ""
    raw = text if isinstance(text, str) else str(text)
    # The common case has nothing to escape; an escape is never shorter than its char.
    out = raw if raw.isascii() and raw.isprintable() else raw[: limit * 2].translate(_TABLE)
    return out if len(out) <= limit else out[: max(0, limit - 3)] + "..."

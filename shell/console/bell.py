"""The attention bell: one BEL when a session starts needing input (off by default).

:class:`AttentionBell` is told the rows after every change of the router's cache and
rings once per transition into ``needs_input`` (a session is known by its id and the
time its wait began, so a re-sent state does not ring again). Sessions already waiting
when the console starts do not ring. The BEL goes through prompt_toolkit's output, and
never while a session has the terminal (a BEL in the relayed stream could end an escape
sequence the session is writing); such a transition just does not ring.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shell.fleet.model import SessionRow

__all__ = ["AttentionBell"]


class AttentionBell:
    """Rings ``ring()`` once per new wait for input, when ``enabled``."""

    def __init__(self, ring: Callable[[], None], *, enabled: bool, suspended: Callable[[], bool]) -> None:
        self.enabled = enabled
        self._ring = ring
        self._suspended = suspended
        self._waiting: dict[str, datetime | None] | None = None   # None: nothing seen yet
        self.rung = 0

    def update(self, rows: list[SessionRow]) -> int:
        """Take the current rows; ring for the sessions that newly need input. Returns how many did."""
        now = {r.id: r.activity_since for r in rows if r.needs_input}
        before, self._waiting = self._waiting, now
        if before is None:
            return 0
        new = [sid for sid, since in now.items() if sid not in before or before[sid] != since]
        if new and self.enabled and not self._suspended():
            self._ring()
            self.rung += 1
        return len(new)

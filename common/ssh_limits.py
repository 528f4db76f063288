"""Flood bounds of the SSH servers: admission before login and rate-limited refusal logs.

An attacker who can reach :222 or :223 has no key, but can still open connections,
try keys and (with a key) open channels. :class:`SSHLimits` bounds each of these;
:class:`Admission` holds the unauthenticated connections; :class:`RefusalLog` turns a
flood of refusals into one log line per event kind and interval.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.logging import get_logger

__all__ = ["Admission", "RefusalLog", "SSHLimits"]

log = get_logger(__name__)


@dataclass(frozen=True)
class SSHLimits:
    """How much one client, or all unauthenticated clients together, may hold.

    The defaults leave room for every legitimate peer: a shell host opens one
    connection per console and per prober to each agent, and a handful of channels on it.
    """

    # Connections that have not logged in yet (the pre-auth flood): the oldest
    # connection of the busiest source is dropped to make room for a new one, so a
    # legitimate client always gets its turn.
    max_unauthenticated: int = 64
    max_unauthenticated_per_source: int = 8
    # Per connection: failed keys, channels open at once, refused requests.
    max_auth_failures: int = 6
    max_channels: int = 64
    max_refused_requests: int = 16
    # One refusal line per kind, then one summary line per interval.
    log_interval: float = 10.0


class Admission:
    """The unauthenticated connections of one server, bounded in total and per source.

    ``admit`` returns False when the source already holds its share; when the total is
    reached it closes the oldest connection of the source that holds the most.
    """

    def __init__(self, limits: SSHLimits) -> None:
        self._limits = limits
        self._pending: dict[object, tuple[str, Callable[[], None]]] = {}  # insertion = age

    def admit(self, conn: object, source: str, close: Callable[[], None]) -> bool:
        """Register a new connection from ``source``; False means refuse it."""
        per_source = Counter(src for src, _ in self._pending.values())
        if per_source[source] >= self._limits.max_unauthenticated_per_source:
            return False
        if len(self._pending) >= self._limits.max_unauthenticated:
            busiest = max(per_source, key=lambda s: per_source[s])
            victim = next(c for c, (src, _) in self._pending.items() if src == busiest)
            _, close_victim = self._pending.pop(victim)
            close_victim()
        self._pending[conn] = (source, close)
        return True

    def done(self, conn: object) -> None:
        """``conn`` logged in or went away: it no longer counts."""
        self._pending.pop(conn, None)

    def __len__(self) -> int:
        return len(self._pending)


class RefusalLog:
    """Warnings that cannot flood the log: the first of each kind per interval, then a count."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._window_start: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` now, or count it when one was logged less than an interval ago."""
        now = time.monotonic()
        start = self._window_start.get(event)
        if start is not None and now - start < self._interval:
            self._suppressed[event] += 1
            if event not in self._timers:
                delay = self._interval - (now - start)
                self._timers[event] = asyncio.get_running_loop().call_later(delay, self._summary, event)
            return
        self._window_start[event] = now
        log.warning(event, **fields)

    def _summary(self, event: str) -> None:
        self._timers.pop(event, None)
        count = self._suppressed.pop(event, 0)
        if count:
            log.warning("ssh refusals not logged one by one", kind=event, count=count,
                        interval_s=self._interval)
        self._window_start.pop(event, None)

    def close(self) -> None:
        """Flush pending summaries (at server shutdown)."""
        for event in list(self._timers):
            self._timers.pop(event).cancel()
            self._summary(event)

"""Capped, jittered exponential backoff for reconnecting clients."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays of ``initial * factor**n``, capped at ``maximum``, the top part randomised.

    Each delay is drawn uniformly from ``[base * (1 - jitter), base]`` (``jitter=1`` is
    "full jitter", ``0`` none), so a fleet of agents does not reconnect in lockstep after
    the shell restarts, and no delay exceeds ``maximum``. ``reset()`` after a success.
    One instance holds one client's attempt count: give each reconnecting client its own.

    **Recovery**: after :meth:`lost` (a connection that was up has dropped), the delays
    stay at or below ``recovery_max`` for ``recovery`` seconds, then grow as usual. A peer
    that restarts (an update, a crash and its service manager's restart) usually listens
    again within seconds; exponential growth alone would leave the client asleep for
    seconds after that (measured: up to 4 s after a 9 s restart, with 0.2 s doubling).
    ``recovery=0`` (the default) turns it off.
    """

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is randomised
    recovery: float = 0.0       # seconds after lost() during which delays stay <= recovery_max
    recovery_max: float = 0.5
    clock: Callable[[], float] = time.monotonic
    _attempt: int = field(default=0, init=False)
    _lost_at: float | None = field(default=None, init=False)

    def next_delay(self) -> float:
        """Return the delay before the next attempt and advance the sequence."""
        base = min(self.maximum, self.initial * (self.factor**self._attempt))
        if self._lost_at is not None and self.clock() - self._lost_at < self.recovery:
            base = min(base, self.recovery_max)
        self._attempt = min(self._attempt + 1, 64)
        spread = base * self.jitter
        return max(0.0, base - spread + random.random() * spread)  # noqa: S311 - not crypto

    def reset(self) -> None:
        """Start again from ``initial`` (after a successful attempt)."""
        self._attempt = 0
        self._lost_at = None

    def lost(self) -> None:
        """A connection that was up has dropped: start again, retrying quickly for ``recovery`` s."""
        self._attempt = 0
        self._lost_at = self.clock()

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

"""Capped, jittered exponential backoff for reconnecting clients."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays of ``initial * factor**n``, capped at ``maximum``, the top part randomised.

    Each delay is drawn uniformly from ``[base * (1 - jitter), base]`` (``jitter=1`` is
    "full jitter", ``0`` none), so a fleet of agents does not reconnect in lockstep after
    the shell restarts, and no delay exceeds ``maximum``. ``reset()`` after a success.
    One instance holds one client's attempt count: give each reconnecting client its own.
    """

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is randomised
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """Return the delay before the next attempt and advance the sequence."""
        base = min(self.maximum, self.initial * (self.factor**self._attempt))
        self._attempt = min(self._attempt + 1, 64)
        spread = base * self.jitter
        return max(0.0, base - spread + random.random() * spread)  # noqa: S311 - not crypto

    def reset(self) -> None:
        """Start again from ``initial`` (after a successful attempt)."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

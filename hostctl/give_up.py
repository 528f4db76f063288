"""When `agents` / `sessions` stop waiting for an agent whose connection keeps failing.

The tunnel retries for ever (the console's long-lived tunnels must); a command that asks
once stops as soon as the answer is known, with the tunnel's own error line:

- a **definitive** failure (the host key is not the pinned one, our key is refused, the
  server refuses the tunnel's socket) after the first attempt;
- **connection refused** (nothing listening: the agent is stopped or restarting) once
  attempts have been refused for a short grace, so an agent mid-restart still answers;
- anything else (timeouts, unreachable hosts) only at the command's deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncssh

from common.errors import UnavailableError
from common.tasks import cancel_and_wait

if TYPE_CHECKING:
    from common.tunnel import Tunnel

__all__ = ["DEFINITIVE", "GiveUpPolicy", "refused_grace", "wait_up_or_give_up"]

DEFINITIVE: tuple[type[Exception], ...] = (
    asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied, asyncssh.ChannelOpenError)
REFUSED_GRACE = 2.0   # s of refused attempts before giving up (an agent restarts in ~0.5 s)


def refused_grace(timeout: float) -> float:
    """The grace for refused attempts under a ``timeout`` s deadline: at most half of it."""
    return min(REFUSED_GRACE, timeout / 2)


@dataclass
class GiveUpPolicy:
    """Decides, after each failed attempt, when to stop waiting (times on one monotonic clock)."""

    grace: float                                  # see refused_grace
    _refused_since: float | None = field(default=None, init=False)

    def after_failure(self, exc: BaseException, now: float) -> float | None:
        """When to give up after an attempt failed with ``exc`` at ``now``; None: wait for the deadline.

        A definitive failure gives up at ``now``; a refused connection ``grace`` s after the
        first of an unbroken run of refusals; any other failure ends such a run.
        """
        if isinstance(exc, DEFINITIVE):
            return now
        if isinstance(exc, ConnectionRefusedError):
            if self._refused_since is None:
                self._refused_since = now
            return self._refused_since + self.grace
        self._refused_since = None
        return None


class _Watch:
    """Applies a :class:`GiveUpPolicy` to a tunnel's failed attempts; ``gave_up`` set when it says so."""

    def __init__(self, policy: GiveUpPolicy) -> None:
        self._policy = policy
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self.gave_up = asyncio.Event()
        self.reason = ""

    def failed(self, exc: Exception, message: str) -> None:
        self.close()
        at = self._policy.after_failure(exc, self._loop.time())
        if at is not None:
            self._timer = self._loop.call_at(at, self._give_up, message)

    def _give_up(self, message: str) -> None:
        self.reason = message
        self.gave_up.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def wait_up_or_give_up(tunnel: Tunnel, timeout: float, policy: GiveUpPolicy) -> None:
    """Wait until ``tunnel`` is up, for at most ``timeout`` s, or until ``policy`` gives up.

    Attempts that failed before the call go unseen: call it as the tunnel starts.

    Raises:
        UnavailableError: the policy gave up (the message is the tunnel's line for the
            last failure), or the tunnel was not up within ``timeout`` s.
    """
    watch = _Watch(policy)
    tunnel.add_attempt_listener(watch.failed)
    up = asyncio.ensure_future(tunnel.wait_up(timeout))
    gave_up = asyncio.ensure_future(watch.gave_up.wait())
    try:
        await asyncio.wait({up, gave_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.close()
        await cancel_and_wait([up, gave_up])
    if not up.done() or up.cancelled():
        raise UnavailableError(watch.reason)
    up.result()

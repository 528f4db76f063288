"""One refresh shared by the callers that want it at the same time, never an older one.

A List asks the engine which containers run. When several Lists come at once (a console
refreshing, the status service, a second console), each needs a reading taken *after*
it arrived (a container killed just before must not show as running), but they need not
each have their own. :class:`SharedRefresh` runs the refresh for the first caller;
callers that arrive while it runs wait and share the next run, which starts after they
arrived. N callers at once cost two runs instead of N, and nobody gets a reading from
before their call.

A run that fails (or whose caller is cancelled) counts for nobody: the next waiting
caller runs it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["SharedRefresh"]


class SharedRefresh:
    """Run ``refresh`` for callers, sharing one run among those who arrived before it began."""

    def __init__(self, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refresh = refresh
        self._lock = asyncio.Lock()
        self._begun = 0      # runs begun so far (numbered 1, 2, ...)
        self._done = 0       # the number of the last run that completed

    @property
    def runs(self) -> int:
        """How many runs have begun."""
        return self._begun

    async def __call__(self) -> None:
        """Return once a run that began after this call has completed."""
        wanted = self._begun + 1          # any run that begins from now on is fresh enough
        async with self._lock:            # FIFO: the callers queue in arrival order
            if self._done >= wanted:
                return                    # another caller's run began after we arrived and completed
            self._begun += 1
            run = self._begun
            await self._refresh()
            self._done = run

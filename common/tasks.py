"""A task set: the owner of background tasks that outlive the call that starts them.

Whoever starts a task owns it (STYLE habit 2). A :class:`TaskSet` keeps a strong reference
to each task, reaps it when it ends (logging an unexpected exception instead of leaving
"Task exception was never retrieved" to the garbage collector), and ``aclose()`` cancels
and awaits every task still running. Use it where the tasks' lifetime is an object's
lifetime; use ``asyncio.TaskGroup`` where it is one block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from common.logging import get_logger

__all__ = ["TaskSet", "cancel_and_wait"]

log = get_logger(__name__)
T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended (their outcomes are dropped).

    The wait holds even when the caller is cancelled meanwhile: the caller's
    ``CancelledError`` is raised once every task has ended (as ``asyncio.TaskGroup`` does),
    so whatever a caller does after this call still finds the tasks finished, and a
    cancelled close cannot leave a task running that still holds sockets. A task that
    ignores its cancellation therefore holds its canceller too: a defect either way.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    caller_cancelled: asyncio.CancelledError | None = None
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError as e:   # ours: kept until the tasks have ended
            caller_cancelled = e
            pending = {t for t in pending if not t.done()}
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: a failed task is not logged as "never retrieved"
    if caller_cancelled is not None:
        raise caller_cancelled


class TaskSet:
    """Background tasks owned by one object; ``aclose()`` cancels and awaits them all.

    Args:
        name: used in the log line of a task that fails unexpectedly.
    """

    def __init__(self, name: str = "tasks") -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def create_task(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task this set owns.

        Raises:
            RuntimeError: the set is closed (the coroutine is closed, not leaked).
        """
        if self._closed:
            coro.close()
            msg = f"{self._name}: task set is closed"
            raise RuntimeError(msg)
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("background task failed", owner=self._name, task=task.get_name(),
                      error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    async def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every task to end on its own; True if they all did."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        return not any(not t.done() for t in self._tasks)

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them; later ``create_task`` fails."""
        self._closed = True
        await cancel_and_wait(list(self._tasks))

    async def __aenter__(self) -> TaskSet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

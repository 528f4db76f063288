"""The task set owns its tasks: it reaps them, logs their failures and cancels the rest on close."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from structlog.testing import capture_logs

from common.tasks import TaskSet, cancel_and_wait
from tests.support.waiting import assert_eventually


async def test_close_cancels_and_awaits_running_tasks() -> None:
    """aclose() cancels every running task and returns only once each has ended."""
    started, ended = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    tasks = TaskSet("t")
    task = tasks.create_task(forever())
    await asyncio.wait_for(started.wait(), 5)
    await tasks.aclose()
    assert task.cancelled()
    assert ended.is_set()
    assert len(tasks) == 0


async def test_failed_task_is_reaped_and_logged() -> None:
    """A task that raises is dropped from the set and its exception logged once."""
    async def boom() -> None:
        raise ValueError("bad")

    async with TaskSet("owner") as tasks:
        with capture_logs() as logs:
            task = tasks.create_task(boom(), name="boom")
            await asyncio.wait([task])
            await assert_eventually(lambda: len(tasks) == 0, timeout=5)  # the done-callback ran
    got = [(e["event"], e["owner"], e["task"]) for e in logs]
    assert got == [("background task failed", "owner", "boom")]


async def test_closed_set_refuses_new_tasks() -> None:
    """After aclose() a new task is refused and its coroutine closed, not leaked."""
    tasks = TaskSet()
    await tasks.aclose()

    async def nothing() -> None:
        return None

    coro = nothing()
    with pytest.raises(RuntimeError, match="closed"):
        tasks.create_task(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_cancel_and_wait_on_finished_tasks() -> None:
    """cancel_and_wait accepts tasks that already ended."""
    async def nothing() -> None:
        return None

    task = asyncio.create_task(nothing())
    await task
    await cancel_and_wait([task])
    assert task.done()


async def test_cancel_and_wait_holds_a_cancelled_caller_until_the_tasks_end() -> None:
    """A caller cancelled while its tasks are ending gets CancelledError only once they ended."""
    cleaning, release = asyncio.Event(), asyncio.Event()
    ended: list[str] = []

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()   # a cleanup that takes time (closing a connection, say)
            ended.append("task")

    async def closer(task: asyncio.Task[None]) -> None:
        try:
            await cancel_and_wait([task])
        finally:
            ended.append("closer")

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    close = asyncio.create_task(closer(task))
    await asyncio.wait_for(cleaning.wait(), 5)
    close.cancel()                      # the closer's own cancellation arrives mid-close
    await asyncio.sleep(0.05)
    assert not close.done()             # held: its task has not ended yet
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(close, 5)
    assert ended == ["task", "closer"]  # the task ended before the closer went on
    assert task.cancelled()


async def test_cancel_and_wait_retrieves_a_failure_during_cancel() -> None:
    """A task that fails while being cancelled is not left "never retrieved"."""
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("failed while closing") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait([task])
    assert isinstance(task.exception(), ValueError)

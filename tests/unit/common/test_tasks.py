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

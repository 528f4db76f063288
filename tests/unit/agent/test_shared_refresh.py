"""SharedRefresh: callers at once share one run, and never one that began before they called."""

from __future__ import annotations

import asyncio

import pytest

from agent.shared_refresh import SharedRefresh


class Engine:
    """A refresh that waits for the test to release it, counting runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.fail = False

    async def refresh(self) -> None:
        self.runs += 1
        await self.release.wait()
        self.release.clear()
        if self.fail:
            raise OSError("engine failed")


async def _until(check: object, steps: int = 100) -> None:
    """Let the loop run until ``check()`` holds (bounded: a few loop turns)."""
    for _ in range(steps):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_callers_during_a_run_share_the_next_one() -> None:
    """The first caller runs; the 5 arriving during its run share one further run that began after them."""
    engine = Engine()
    shared = SharedRefresh(engine.refresh)
    first = asyncio.create_task(shared())
    await _until(lambda: engine.runs == 1)
    later = [asyncio.create_task(shared()) for _ in range(5)]
    await _until(lambda: all(not t.done() for t in later))
    engine.release.set()                  # the first run ends: it is too old for the later callers
    await first
    await _until(lambda: engine.runs == 2)
    assert not any(t.done() for t in later)
    engine.release.set()
    await asyncio.wait_for(asyncio.gather(*later), 5)
    assert engine.runs == shared.runs == 2


async def test_a_caller_alone_always_runs() -> None:
    """Calls one after another each run the refresh."""
    engine = Engine()
    shared = SharedRefresh(engine.refresh)
    for n in range(1, 4):
        task = asyncio.create_task(shared())
        await _until(lambda n=n: engine.runs == n)
        engine.release.set()
        await task
    assert engine.runs == 3


async def test_a_failed_run_counts_for_nobody() -> None:
    """The run's caller gets its error; a caller waiting for it runs the refresh itself."""
    engine = Engine()
    shared = SharedRefresh(engine.refresh)
    first = asyncio.create_task(shared())
    await _until(lambda: engine.runs == 1)
    second = asyncio.create_task(shared())
    third = asyncio.create_task(shared())
    await _until(lambda: engine.runs == 1 and not second.done())
    engine.release.set()
    await first
    await _until(lambda: engine.runs == 2)
    engine.fail = True
    engine.release.set()
    with pytest.raises(OSError, match="engine failed"):
        await second
    await _until(lambda: engine.runs == 3)
    engine.fail = False
    engine.release.set()
    await asyncio.wait_for(third, 5)
    assert engine.runs == 3

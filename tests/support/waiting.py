"""Bounded waiting instead of sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["assert_eventually", "wait_for_sync"]

T = TypeVar("T")


async def assert_eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Call ``check`` until it returns a truthy value without raising; return that value.

    Raises the last AssertionError (or a TimeoutError) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            if result:
                return result
            last = AssertionError(f"condition still false: {result!r}")
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {last}") from last
        await asyncio.sleep(interval)


def wait_for_sync(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Synchronous :func:`assert_eventually`, for tests that drive subprocesses."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {last}")
        time.sleep(interval)

"""Why an attach ended on its own: the session ended, a detach, or an error (AttachManager._classify)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from agent import attach_manager
from agent.attach_manager import AttachManager
from agent.runtime import ContainerInfo
from agent.viewers import EndReason, ViewerRegistry
from tests.fakes.fake_runtime import FakeRuntime

SID = "0b4c1f7e-8a59-4d1e-9c3a-2f6f1b7d9e10"


def _manager(running: bool) -> tuple[AttachManager, FakeRuntime]:
    runtime = FakeRuntime()
    runtime.containers[SID] = ContainerInfo(SID, f"convocate-session-{SID}", running)
    return AttachManager(runtime, ViewerRegistry(), user="claude"), runtime


async def test_marks_in_the_tail_decide_without_asking_the_engine() -> None:
    manager, _ = _manager(running=True)
    assert (await manager._classify(SID, b"...\r\n[exited]\r\n"))[0] is EndReason.SESSION_ENDED
    assert (await manager._classify(SID, b"[detached (from session claude)]"))[0] is EndReason.DETACHED


async def test_a_container_that_stops_just_after_tmux_means_the_session_ended() -> None:
    """tmux gone, its container still up for a moment (a busy host): not an error."""
    manager, runtime = _manager(running=True)

    async def stop_soon() -> None:
        await asyncio.sleep(0.3)
        runtime.containers[SID] = replace(runtime.containers[SID], running=False)

    stopper = asyncio.create_task(stop_soon())
    reason, message = await manager._classify(SID, b"$ exit\r\n")
    await stopper
    assert reason is EndReason.SESSION_ENDED
    assert message == "the session's container stopped"


async def test_a_container_that_keeps_running_makes_it_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """tmux attach ended while the container runs on: ERROR with the last line it printed."""
    monkeypatch.setattr(attach_manager, "_STOP_LOOK_INTERVAL", 0.01)
    manager, runtime = _manager(running=True)
    reason, message = await manager._classify(SID, b"hello\r\nopen terminal failed: not a terminal\r\n")
    assert reason is EndReason.ERROR
    assert message == "tmux attach ended: open terminal failed: not a terminal"
    assert runtime.containers[SID].running

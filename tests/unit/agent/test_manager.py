"""The session manager on a fake runtime: operations, state transitions and their events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.attach_manager import AttachManager
from agent.config import AgentConfig
from agent.events import AgentEvent, EventType
from agent.manager import SessionManager
from agent.runtime import ContainerEvent
from agent.viewers import ViewerRegistry
from common.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError
from tests.fakes.fake_runtime import FakeRuntime


class Recorder:
    """An event sink that keeps (type, session id)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def publish(self, event: AgentEvent) -> None:
        self.events.append((event.type, event.session_id))


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, FakeRuntime, Recorder]]:
    """A started manager over a fake runtime in a temporary sessions root."""
    runtime, sink, registry = FakeRuntime(), Recorder(), ViewerRegistry()
    config = AgentConfig(sessions_root=tmp_path, config_dir=tmp_path / "etc", dns_server="")
    manager = SessionManager(config, runtime, agent_id="a1", events=sink, registry=registry,
                             attach=AttachManager(runtime, registry, user="claude"))
    await manager.start()
    try:
        yield manager, runtime, sink
    finally:
        await manager.close()


async def test_lifecycle_publishes_each_transition_once(
    parts: tuple[SessionManager, FakeRuntime, Recorder],
) -> None:
    """Create+start, kill, restart and delete publish created, started, stopped and deleted once each."""
    manager, runtime, sink = parts
    view = await manager.create("one", 0, "", "", start=True)
    sid = view.record.id
    assert view.running
    assert runtime.specs[sid].labels["convocate.agent"] == "a1"
    with pytest.raises(FailedPreconditionError, match='session "one" already running'):
        await manager.restart(sid)
    await manager.kill(sid)
    await runtime.event_queue.put(ContainerEvent("die", sid, "c1"))  # late event: no second STOPPED
    await manager.restart(sid)
    await manager.delete(sid)
    await asyncio.wait_for(runtime.event_queue.join(), 5)  # the late die was handled
    assert [t for t, s in sink.events if s == sid and t != EventType.SESSION_ACTIVITY] == [
        EventType.SESSION_CREATED, EventType.SESSION_STARTED, EventType.SESSION_STOPPED,
        EventType.SESSION_STARTED, EventType.SESSION_STOPPED, EventType.SESSION_DELETED,
    ]
    with pytest.raises(NotFoundError):
        await manager.get(sid)


async def test_a_die_event_of_an_old_container_does_not_stop_the_new_one(
    parts: tuple[SessionManager, FakeRuntime, Recorder],
) -> None:
    """Events name the container: a die from a replaced container leaves the session running."""
    manager, runtime, _ = parts
    sid = (await manager.create("two", 0, "", "", start=True)).record.id
    await runtime.event_queue.put(ContainerEvent("die", sid, "some-older-container"))
    await asyncio.wait_for(runtime.event_queue.join(), 5)
    assert (await manager.list())[0].running
    runtime.containers.pop(sid)
    await runtime.event_queue.put(ContainerEvent("die", sid, "c1"))
    await asyncio.wait_for(runtime.event_queue.join(), 5)
    assert not (await manager.get(sid)).running


async def test_the_start_event_of_its_own_start_is_not_read_again(
    parts: tuple[SessionManager, FakeRuntime, Recorder],
) -> None:
    """The agent marked its own start from the start's answer: that container's "start" event
    costs no inspect; a start event of another container is read from the engine."""
    manager, runtime, sink = parts
    sid = (await manager.create("own", 0, "", "", start=True)).record.id
    started = runtime.containers.pop(sid)   # an inspect would now say "no container"
    await runtime.event_queue.put(ContainerEvent("start", sid, started.container_id))
    await asyncio.wait_for(runtime.event_queue.join(), 5)
    assert (EventType.SESSION_STOPPED, sid) not in sink.events   # not inspected: still running
    await runtime.event_queue.put(ContainerEvent("start", sid, "another-container"))
    await asyncio.wait_for(runtime.event_queue.join(), 5)
    assert (EventType.SESSION_STOPPED, sid) in sink.events       # inspected: gone


async def test_update_keeps_its_own_port_and_clone_drops_it(
    parts: tuple[SessionManager, FakeRuntime, Recorder],
) -> None:
    """Re-saving a session with its own port is fine, taking another's is not; clones have no port."""
    manager, _, _ = parts
    a = (await manager.create("a", -1, "tcp", "a", start=False)).record
    b = (await manager.create("b", -1, "tcp", "", start=False)).record
    assert (a.port, b.port) == (1001, 1002)
    same = await manager.update(a.id, "a2", a.port, "tcp", "a")
    assert same.record.port == 1001
    with pytest.raises(AlreadyExistsError):
        await manager.update(b.id, "b", 1001, "tcp", "")
    clone = await manager.clone(a.id, "copy")
    assert clone.record.port == 0
    assert clone.record.dns_name == ""


async def test_background_needs_a_running_session(
    parts: tuple[SessionManager, FakeRuntime, Recorder],
) -> None:
    """Background of a stopped session is refused; of a running one it detaches tmux clients."""
    manager, runtime, _ = parts
    sid = (await manager.create("bg", 0, "", "", start=False)).record.id
    with pytest.raises(FailedPreconditionError, match="is not running"):
        await manager.background(sid)
    await manager.restart(sid)
    assert await manager.background(sid) == 0
    assert ["tmux", "detach-client", "-s", "claude"] in runtime.execs

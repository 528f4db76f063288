"""Health on a fake runtime: engine down makes states unknown, the mass-death alarm, disk checks.

The same behaviour against a real, private Docker Engine: tests/integration/agent/test_engine_health.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.attach_manager import AttachManager
from agent.config import AgentConfig
from agent.events import AgentEvent, EventType
from agent.health import DiskThresholds, HealthMonitor, memory, require_free_space
from agent.manager import SessionManager
from agent.runtime import ContainerEvent
from agent.viewers import ViewerRegistry
from common.domain import HostHealth, SessionStatus, host_health_attributes, host_health_from_attributes
from common.errors import FailedPreconditionError, ResourceExhaustedError
from tests.fakes.fake_runtime import FakeRuntime
from tests.support.waiting import assert_eventually

DOWN = "the Docker Engine does not answer: start it with `systemctl start docker`"


class Sink:
    """Keeps every event."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def publish(self, event: AgentEvent) -> None:
        self.events.append(event)

    def of(self, type_: str) -> list[AgentEvent]:
        return [e for e in self.events if e.type == type_]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, FakeRuntime, Sink, HealthMonitor]]:
    """A started manager and health monitor over a fake runtime (alarm: 3 within 60 s)."""
    runtime, sink, registry = FakeRuntime(), Sink(), ViewerRegistry()
    config = AgentConfig(sessions_root=tmp_path, config_dir=tmp_path / "etc", dns_server="",
                         write_min_free_bytes=0)
    health = HealthMonitor(runtime, tmp_path, interval=60, thresholds=DiskThresholds(0, 0))
    manager = SessionManager(config, runtime, agent_id="a1", events=sink, registry=registry,
                             attach=AttachManager(runtime, registry, user="claude"), health=health)
    await manager.start()
    await health.start()
    try:
        yield manager, runtime, sink, health
    finally:
        await health.close()
        await manager.close()


async def test_engine_down_makes_every_state_unknown_and_restore_makes_it_real(
    parts: tuple[SessionManager, FakeRuntime, Sink, HealthMonitor],
) -> None:
    """Down: unknown (with when it was last known), one update each; up again: the real state."""
    manager, runtime, sink, health = parts
    assert health.current.engine_up
    assert health.current.engine_version == "0.0-fake"
    view = await manager.create("one", 0, "", "", start=True)
    sid = view.record.id
    assert view.session("a1").status is SessionStatus.RUNNING
    runtime.engine_error = DOWN
    down = await health.check()
    assert not down.engine_up
    assert down.engine_error == DOWN
    [listed] = await manager.list()
    session = listed.session("a1")
    assert session.state_unknown
    assert session.status is SessionStatus.UNKNOWN
    assert session.state_known_at is not None
    assert [e.session_id for e in sink.of(EventType.SESSION_UPDATED)] == [sid]
    with pytest.raises(FailedPreconditionError, match=r"^the Docker Engine on agent a1 does not answer"):
        await manager.restart(sid)
    with pytest.raises(FailedPreconditionError, match="the Docker Engine on agent a1 does not answer"):
        await manager.kill(sid)
    runtime.containers.clear()           # the engine came back without the container
    runtime.engine_error = ""
    await health.check()
    await assert_eventually(lambda: not manager._view(manager._records[sid]).unknown, timeout=5)
    [listed] = await manager.list()
    assert listed.session("a1").status is SessionStatus.STOPPED
    assert sink.of(EventType.SESSION_STOPPED)[-1].session_id == sid


async def test_three_unasked_deaths_raise_one_alarm_with_exit_codes(
    parts: tuple[SessionManager, FakeRuntime, Sink, HealthMonitor],
) -> None:
    """Three containers die from outside: one alarm naming all three; operator kills raise none."""
    manager, runtime, sink, _ = parts
    ids = [(await manager.create(f"s{i}", 0, "", "", start=True)).record.id for i in range(6)]
    for sid in ids[3:]:
        await manager.kill(sid)
        await runtime.event_queue.put(ContainerEvent("die", sid, runtime.specs[sid].name, exit_code=143))
    for sid in ids[:3]:
        info = runtime.containers.pop(sid)
        await runtime.event_queue.put(ContainerEvent("die", sid, info.container_id, exit_code=137))
    await assert_eventually(lambda: sink.of(EventType.SESSIONS_MASS_DEATH), timeout=5)
    [alarm] = sink.of(EventType.SESSIONS_MASS_DEATH)
    assert alarm.attributes["sessions"].split(",") == ids[:3]
    assert alarm.attributes["exit_codes"] == "137,137,137"
    assert alarm.attributes["detail"].startswith('3 sessions stopped unasked within 60 s: "s0" (exit 137)')


async def test_two_deaths_are_not_an_alarm(
    parts: tuple[SessionManager, FakeRuntime, Sink, HealthMonitor],
) -> None:
    """Below the count: no alarm, though both stops are published."""
    manager, runtime, sink, _ = parts
    ids = [(await manager.create(f"s{i}", 0, "", "", start=True)).record.id for i in range(2)]
    for sid in ids:
        info = runtime.containers.pop(sid)
        await runtime.event_queue.put(ContainerEvent("die", sid, info.container_id, exit_code=1))
    await assert_eventually(lambda: len(sink.of(EventType.SESSION_STOPPED)) == 2, timeout=5)
    assert not sink.of(EventType.SESSIONS_MASS_DEATH)


async def test_writes_refused_when_free_space_is_below_the_minimum(tmp_path: Path) -> None:
    """The up-front check: one line, says disk full and that nothing changed."""
    with pytest.raises(ResourceExhaustedError, match=r"^disk full on this agent .*nothing was changed$"):
        require_free_space(tmp_path, 1 << 62)
    require_free_space(tmp_path, 0)


def test_host_health_attributes_round_trip_and_hostile_values() -> None:
    """Heartbeat attributes carry the health; malformed numbers read as 0."""
    h = HostHealth(engine_up=False, engine_error=DOWN, disk_free_bytes=5, disk_total_bytes=10,
                   disk_low=True, mem_available_bytes=7, mem_total_bytes=9, load1=0.5, cpus=2)
    back = host_health_from_attributes(host_health_attributes(h))
    assert back == h
    assert host_health_from_attributes({"version": "1"}) is None
    odd = host_health_from_attributes({"engine": "up", "disk_free_bytes": "-1", "load1": "nan",
                                       "checked_at": "x"})
    assert odd == HostHealth(engine_up=True)
    assert h.problems() == [DOWN, "disk nearly full: 5 B free of 10 B"]


def test_thresholds_and_memory(tmp_path: Path) -> None:
    """Low below the bytes or the percentage; /proc/meminfo read, an unreadable one is (0, 0)."""
    t = DiskThresholds(low_bytes=100, low_percent=10)
    assert t.low(99, 10_000)
    assert t.low(500, 10_000)
    assert not t.low(1500, 10_000)
    available, total = memory()
    assert 0 < available <= total
    assert memory(tmp_path / "missing") == (0, 0)

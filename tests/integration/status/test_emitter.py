"""The agent's status emitter against a real status service over real SSH."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.events import AgentEvent, EventType, InboundLinkTracker
from agent.status_emitter import StatusEmitter
from tests.support.status_stack import StatusStack
from tests.support.waiting import assert_eventually


async def test_started_heartbeat_events_and_shutdown_reach_the_view(
    status: StatusStack, short_tmp: Path
) -> None:
    """The view shows the agent connected with fresh heartbeats, its events, and its shutdown."""
    settings = status.agent_tunnel("agent-a", short_tmp / "agent-a")
    emitter = StatusEmitter("agent-a", "1.2.3", settings, heartbeat_interval=0.2, hostname="host-a")
    await emitter.start()
    try:
        h = await status.wait_health("agent-a", lambda h: h.connected)
        assert (h.version, h.hostname) == ("1.2.3", "host-a")
        emitter.publish(AgentEvent(EventType.SESSION_CREATED, session_id="s-1"))
        emitter.publish(AgentEvent("future.kind", attributes={"x": "1"}))
        h = await status.wait_health("agent-a", lambda h: "future.kind" in [e.type for e in h.recent_events])
        assert h.last_session_events["s-1"].type == EventType.SESSION_CREATED
        beats = h.events_received
        await status.wait_health("agent-a", lambda h: h.events_received >= beats + 2, timeout=3)
        assert emitter.status_link().up
        assert not status.health("agent-a").heartbeat_stale
    finally:
        await emitter.close()
    h = await status.wait_health("agent-a", lambda h: not h.connected)
    assert h.recent_events[-1].type == EventType.AGENT_SHUTDOWN
    assert any(n == "agent→shell status stream down: agent shut down" for n in h.notices)


async def test_queue_overflow_is_counted_not_fatal(status: StatusStack, short_tmp: Path) -> None:
    """Events beyond the queue are dropped and counted while the agent keeps running and reports it."""
    settings = status.agent_tunnel("agent-q", short_tmp / "agent-q")
    emitter = StatusEmitter("agent-q", "1", settings, heartbeat_interval=0.2, queue_size=8)
    for i in range(50):  # not started yet: nothing drains the queue
        emitter.publish(AgentEvent(EventType.SESSION_UPDATED, session_id=f"s-{i}"))
    assert emitter.dropped == 50 - 8
    await emitter.start()  # agent.started finds the queue full too
    try:
        h = await status.wait_health("agent-q", lambda h: h.events_dropped == 43)
        assert any("dropped 43" in n for n in h.notices)
        assert emitter.status_link().dropped_events == 43
        emitter.publish(AgentEvent(EventType.SESSION_DELETED, session_id="later"))
        await status.wait_health("agent-q", lambda h: "later" in h.last_session_events)
    finally:
        await emitter.close()


async def test_missing_pings_are_reported_through_the_status_stream(
    status: StatusStack, short_tmp: Path
) -> None:
    """When the shell's Pings stop, the agent says so over the status stream, and again when they resume."""
    tracker = InboundLinkTracker()
    tracker.record_ping("console")
    settings = status.agent_tunnel("agent-p", short_tmp / "agent-p")
    emitter = StatusEmitter(
        "agent-p", "1", settings, heartbeat_interval=0.2, tracker=tracker, control_budget=0.4
    )
    await emitter.start()
    try:
        h = await status.wait_health("agent-p", lambda h: any("heartbeats missing" in n for n in h.notices))
        assert any("shell→agent" in n and "no Ping from the shell" in n for n in h.notices)
        tracker.record_ping("console")
        await status.wait_health("agent-p", lambda h: not any("missing" in n for n in h.notices))
    finally:
        await emitter.close()


async def test_outage_keeps_events_not_heartbeats_and_reconnects(
    status: StatusStack, short_tmp: Path
) -> None:
    """Events from an outage arrive after it, with no heartbeat backlog and no second agent.started."""
    settings = status.agent_tunnel("agent-r", short_tmp / "agent-r")
    emitter = StatusEmitter("agent-r", "1", settings, heartbeat_interval=0.2)
    await emitter.start()
    try:
        await status.wait_health("agent-r", lambda h: h.connected)
        ssh = status.server.ssh
        ssh.close()
        await ssh.wait_closed()
        await status.wait_health("agent-r", lambda h: not h.connected)
        await assert_eventually(lambda: not emitter.status_link().up)
        assert emitter.status_link().last_error
        received = status.health("agent-r").events_received
        for i in range(5):
            emitter.publish(AgentEvent(EventType.SESSION_UPDATED, session_id=f"during-{i}"))
        await asyncio.sleep(1.0)  # five heartbeat intervals of outage
        await ssh.start()
        h = await status.wait_health("agent-r", lambda h: "during-4" in h.last_session_events, timeout=10)
        assert h.connected
        assert h.events_received - received <= 5 + 3  # the five events and a heartbeat or two
        types = [e.type for e in h.recent_events]
        assert types.count(EventType.AGENT_STARTED) <= 1
        assert emitter.status_link().up
    finally:
        await emitter.close()

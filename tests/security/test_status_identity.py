"""Security review finding 5: the status service binds an agent's identity to its SSH key.

A real status service (its asyncssh server, both gRPC sockets) on loopback, agents
with the allow-list lines init-agent writes, and real tunnels. The attacker holds
agent-a's key: it publishes as agent-b, calls Watch/GetView/ReportLink through SSH,
opens the local socket through SSH, floods ghost ids and oversized events, and claims
an infinite heartbeat interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from convocate.v1 import link_pb2, sessions_pb2, status_pb2, status_pb2_grpc

from agent.status_emitter import StatusEmitter
from common.errors import UnavailableError
from common.tunnel import Tunnel
from shell.status.server import PUBLISH_MAX_RECEIVE
from shell.status.view import MAX_AGENT_EVENT_BYTES, MAX_ATTRIBUTES, SNAPSHOT_LIMIT
from tests.support.status_stack import StatusStack, start_status_stack

HEARTBEAT = 0.5


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvsi-") as d:
        yield Path(d)


@pytest.fixture
async def status(short_tmp: Path) -> AsyncIterator[StatusStack]:
    """A real status service on 127.0.0.1 (no registry: no prober)."""
    stack = await start_status_stack(short_tmp / "shell", heartbeat_interval=HEARTBEAT)
    try:
        yield stack
    finally:
        await stack.server.stop(grace=0)


@pytest.fixture
async def agent_b(status: StatusStack, short_tmp: Path) -> AsyncIterator[StatusEmitter]:
    """The honest agent-b, publishing through its own key."""
    emitter = StatusEmitter("agent-b", "1.0", status.agent_tunnel("agent-b", short_tmp / "agent-b"),
                            heartbeat_interval=0.2, hostname="host-b")
    await emitter.start()
    try:
        await status.wait_health("agent-b", lambda h: h.connected and h.hostname == "host-b")
        yield emitter
    finally:
        await emitter.close()


@pytest.fixture
async def attacker(status: StatusStack, short_tmp: Path) -> AsyncIterator[Tunnel]:
    """A tunnel to the status service holding agent-a's key (authorized, tagged agent-a)."""
    async with Tunnel(status.agent_tunnel("agent-a", short_tmp / "agent-a")) as tunnel:
        await tunnel.wait_up(10)
        yield tunnel


def _event(agent_id: str, type_: str = "agent.heartbeat", **attrs: str) -> status_pb2.Event:
    return status_pb2.Event(type=type_, agent_id=agent_id, attributes=attrs)


async def _publish(tunnel: Tunnel, events: list[status_pb2.Event]) -> grpc.StatusCode:
    """Send ``events`` on one Publish stream; the status code it ends with."""
    call = status_pb2_grpc.StatusStub(tunnel.channel).Publish()
    try:
        for event in events:
            await call.write(event)
        await call.done_writing()
        await asyncio.wait_for(call, 5)
    except grpc.aio.AioRpcError as e:
        return e.code()
    except asyncio.InvalidStateError:  # the server ended the call while we were still writing
        return (await call.code())
    return grpc.StatusCode.OK


async def test_agent_a_key_cannot_publish_as_agent_b(
    status: StatusStack, agent_b: StatusEmitter, attacker: Tunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """agent-a's key publishing as agent-b is refused and logged; agent-b's row is untouched."""
    before = status.health("agent-b")
    forged = [_event("agent-b", hostname="\x1b]0;pwned\x07evil", version="6.6.6"),
              _event("agent-b", "link.control_stale", detail="forged: shell→agent down")]
    assert await _publish(attacker, forged) == grpc.StatusCode.PERMISSION_DENIED
    after = await status.wait_health("agent-b", lambda h: h.events_received > before.events_received)
    assert (after.hostname, after.version) == ("host-b", "1.0")
    assert not any("forged" in n for n in after.notices)
    assert all(e.type != "link.control_stale" for e in after.recent_events)
    assert any("event names another agent" in r.getMessage() or "another agent" in str(r.msg)
               for r in caplog.records)
    # Its own id, on the same key, is accepted: the binding refuses only the lie.
    assert await _publish(attacker, [_event("agent-a", hostname="host-a")]) == grpc.StatusCode.OK
    assert status.health("agent-a").hostname == "host-a"


async def test_watch_getview_reportlink_are_not_reachable_over_ssh(
    status: StatusStack, agent_b: StatusEmitter, attacker: Tunnel, short_tmp: Path
) -> None:
    """Through an agent key Watch, GetView, ReportLink and AskAgents are refused; no local socket opens."""
    stub = status_pb2_grpc.StatusStub(attacker.channel)
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await stub.GetView(status_pb2.GetViewRequest(), timeout=5)
    assert got.value.code() == grpc.StatusCode.PERMISSION_DENIED
    watch = stub.Watch(status_pb2.WatchRequest(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await watch.read()
    assert got.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await stub.ReportLink(status_pb2.LinkReport(agent_id="agent-b", reporter="x",
                                                    control_link=link_pb2.LinkState(known=True)), timeout=5)
    assert got.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # An agent key may not have the service ask the other agents (their sessions, their health).
    ask = stub.AskAgents(status_pb2.AskAgentsRequest(agents=[status_pb2.AgentEntry(agent_id="agent-b")],
                                                     with_sessions=True), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await ask.read()
    assert got.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Naming the local socket's real path over SSH opens nothing.
    settings = status.agent_tunnel("agent-a", short_tmp / "agent-a2")
    local = dataclasses.replace(settings, remote_socket=str(status.config.socket))
    async with Tunnel(local) as tunnel:
        with pytest.raises(UnavailableError, match="refused the tunnel"):
            await tunnel.wait_up(5)
    # The local socket itself still serves the view.
    view = await status.view()
    assert [a.agent_id for a in view.agents] == ["agent-b"]


async def test_ghost_ids_oversized_events_and_infinite_intervals_are_bounded(
    status: StatusStack, agent_b: StatusEmitter, attacker: Tunnel
) -> None:
    """A flood of ghost ids and oversized events leaves GetView working and the view bounded."""
    for i in range(200):  # each forged id ends its stream; none becomes an agent
        assert await _publish(attacker, [_event(f"ghost-{i}")]) == grpc.StatusCode.PERMISSION_DENIED
    too_big = _event("agent-a", blob="x" * (PUBLISH_MAX_RECEIVE + 1))
    assert await _publish(attacker, [too_big]) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Under the receive limit: big events for many sessions, too many attributes, bad intervals.
    big = {f"k{i}": "v" * 1000 for i in range(14)}
    wide = {f"k{i}": "w" * 200 for i in range(60)}
    flood = [status_pb2.Event(type="session.updated", agent_id="agent-a", session_id=f"s-{i}",
                              attributes=big if i % 2 else wide) for i in range(400)]
    # Under the receive limit but too big to keep even with its attributes trimmed: refused.
    flood.append(status_pb2.Event(type="session.updated", agent_id="agent-a", session_id="s-big",
                                  session=sessions_pb2.Session(name="z" * 60_000)))
    flood.append(_event("agent-a", interval="inf"))
    flood.append(_event("agent-a", interval="nan"))
    flood.append(_event("agent-a", interval="-5"))
    assert await _publish(attacker, flood) == grpc.StatusCode.OK
    view = status.server.view
    assert view.agent_count() == 2
    a = view._agents["agent-a"]
    assert math.isfinite(a.interval)
    assert a.interval == 0.0  # nothing valid was claimed
    assert a.session_event_bytes <= MAX_AGENT_EVENT_BYTES
    assert a.events_refused == 1
    assert all(len(e.attributes) <= MAX_ATTRIBUTES for e in a.last_session_events.values())
    snapshot = await status.view()  # through the local socket: still answers
    assert {h.agent_id for h in snapshot.agents} == {"agent-a", "agent-b"}
    assert snapshot.ByteSize() < SNAPSHOT_LIMIT
    b = next(h for h in snapshot.agents if h.agent_id == "agent-b")
    assert (b.hostname, b.connected) == ("host-b", True)

"""The agent process dies or stops: session containers keep running, and it picks them up again."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from convocate.v1 import attach_pb2, sessions_pb2

from tests.integration.agent.conftest import open_client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream

pytestmark = [pytest.mark.docker]


@pytest.fixture
def own_agent(offline_image: str) -> Iterator[AgentProcess]:
    """An agent of its own on 127.0.0.3 (these tests kill it)."""
    with tempfile.TemporaryDirectory(prefix="cvr-") as d:
        proc = AgentProcess(Path(d), host="127.0.0.3", image=offline_image, name="restart")
        proc.start()
        try:
            yield proc
        finally:
            proc.close()


def _running(session_id: str) -> bool:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", f"convocate-session-{session_id}"],
                         capture_output=True, text=True, timeout=30, check=False)
    return out.stdout.strip() == "true"


async def test_kill_9_mid_attach_keeps_the_container_and_reattach_shows_the_screen(
    own_agent: AgentProcess,
) -> None:
    """SIGKILL of the agent during an attach leaves the container running; after a restart the
    session is adopted as running and a new attach redraws the earlier screen."""
    client = await open_client(own_agent)
    try:
        s = await client.create("survivor", start=True)
        view = AttachStream(client.attach, s.id)
        await view.wait_started()
        view.type("echo BEFORE-$((6*7))\r")
        await view.wait_for("BEFORE-42")
        await own_agent.akill()
        await view.wait_closed()  # the stream breaks: an error, not an end frame
        await view.close()
        assert _running(s.id)
        await own_agent.astart()
        await client.tunnel.wait_up(15)
        got = await client.get(s.id)
        assert got.running
        assert got.viewer_count == 0
        again = AttachStream(client.attach, s.id)
        try:
            await again.wait_started()
            await again.wait_for("BEFORE-42")
        finally:
            await again.close()
    finally:
        await client.tunnel.close()


async def test_sigterm_ends_viewers_with_agent_shutdown_and_keeps_containers(
    own_agent: AgentProcess,
) -> None:
    """A graceful stop sends AGENT_SHUTDOWN to every viewer and does not stop any container."""
    client = await open_client(own_agent)
    try:
        s = await client.create("graceful", start=True)
        view = AttachStream(client.attach, s.id)
        await view.wait_started()
        assert await own_agent.astop() == 0
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_AGENT_SHUTDOWN
        await view.close()
        assert _running(s.id)
    finally:
        await client.tunnel.close()


async def _drain(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    async with asyncio.timeout(30):
        for _ in range(10_000):
            if await call.read() is grpc.aio.EOF:
                return


async def _stream_end(call: grpc.aio.UnaryStreamCall[Any, Any]) -> grpc.aio.AioRpcError:
    """Read a server stream to its end; the error it ended with (it must end with one)."""
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await _drain(call)
    return ended.value


async def test_sigterm_ends_watch_and_log_follow_streams_at_once(own_agent: AgentProcess) -> None:
    """Open WatchSessions and a following SessionLog end with UNAVAILABLE "the agent is stopping".

    They never end by themselves: without this the stop waits out gRPC's whole grace period and
    the clients learn of it only when the connection drops.
    """
    client = await open_client(own_agent)
    try:
        s = await client.create("watched")
        watch = client.sessions.WatchSessions(sessions_pb2.WatchSessionsRequest())
        follow = client.sessions.SessionLog(sessions_pb2.SessionLogRequest(id=s.id, follow=True))
        first = await asyncio.wait_for(watch.read(), 30)
        assert isinstance(first, sessions_pb2.SessionEvent)
        assert first.kind == sessions_pb2.SESSION_EVENT_KIND_EXISTING
        await asyncio.wait_for(follow.read(), 30)     # the "created" entry: the follow is open
        stopping = asyncio.create_task(own_agent.astop())
        calls: tuple[grpc.aio.UnaryStreamCall[Any, Any], ...] = (watch, follow)
        for call in calls:
            end = await _stream_end(call)
            assert end.code() == grpc.StatusCode.UNAVAILABLE
            assert "the agent is stopping" in (end.details() or "")
        assert await stopping == 0
    finally:
        await client.tunnel.close()

"""A real agent on 127.0.0.2 with one started session, reached through the SSH tunnel."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from common.client.calls import AgentCalls
from common.domain import Session
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image

__all__ = ["agent_session"]


@asynccontextmanager
async def agent_session(name: str) -> AsyncIterator[tuple[AgentProcess, Tunnel, Session]]:
    """Start an agent with the offline image, open a tunnel, create and start a session.

    Yields the agent process, the open tunnel and the session; stops and cleans up after.
    """
    image = ensure_offline_image()
    with tempfile.TemporaryDirectory(prefix="cvb-") as d:
        agent = AgentProcess(Path(d) / "a", host="127.0.0.2", image=image, name="bench")
        agent.start()
        try:
            async with Tunnel(agent.tunnel_settings()) as tunnel:
                await tunnel.wait_up(15)
                calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
                session = await calls.create(name, 0, "tcp", "", start=True)
                yield agent, tunnel, session
        finally:
            agent.close()

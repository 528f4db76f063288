"""An agent with more attached viewers than a default HTTP connection pool holds still answers.

Every attached viewer holds one connection to the engine (its exec's stream) for as long as
it is attached. aiohttp's default pool holds 100 connections: past that, every engine call
of the agent (List, create, the next attach) would wait, without a deadline, for a viewer to
leave. The agent's engine connections are not pooled to a count.
"""

from __future__ import annotations

import asyncio

import pytest
from convocate.v1 import attach_pb2, sessions_pb2

from tests.integration.agent.conftest import TIMEOUT, Client
from tests.support.attach_stream import AttachStream

pytestmark = [pytest.mark.docker]

VIEWERS = 110       # past aiohttp's default pool of 100, the agent's event stream's own included
AT_ONCE = 16        # attaches in flight at a time


async def test_past_a_hundred_viewers_the_agent_still_answers(client: Client) -> None:
    """110 observers on two sessions are all attached; then List, a create and one more attach answer."""
    sessions = [await client.create(f"crowd-{i}", start=True) for i in range(2)]
    views: list[AttachStream] = []
    gate = asyncio.Semaphore(AT_ONCE)

    async def observe(i: int) -> None:
        async with gate:
            view = AttachStream(client.attach, sessions[i % 2].id, mode=attach_pb2.ATTACH_MODE_OBSERVE)
            views.append(view)
            await view.wait_started(timeout=60)

    try:
        await asyncio.wait_for(asyncio.gather(*(observe(i) for i in range(VIEWERS))), 120)
        listed = await client.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=TIMEOUT)
        by_id = {s.id: s for s in listed.sessions}
        assert sum(by_id[s.id].viewer_count for s in sessions) == VIEWERS
        late = await client.create("crowd-late", start=True)
        one_more = AttachStream(client.attach, late.id)
        views.append(one_more)
        await one_more.wait_started(timeout=TIMEOUT)
        await one_more.wait_for("$", timeout=TIMEOUT)
    finally:
        await asyncio.gather(*(v.close() for v in views))
        for s in sessions:
            await client.delete(s.id)

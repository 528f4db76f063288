"""The attention queue end to end: a real agent, the offline image's stand-in CLI, the status
service with its webhook, the router and the console's table.

The test answers the session only through the console's own paths: the router's Reply
types the stand-in CLI's commands (``:prompt``, ``:permit``, ``:done``) into the session,
which fire the same hooks the real CLI fires; Peek reads what the screen shows.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import web

from agent.identity import new_agent_id
from common.registry import register_agent
from shell.console.state import ConsoleState
from shell.console.table import columns_for, format_row
from shell.fleet.router import Router, RouterConfig
from shell.status.server import StatusServer
from tests.support.agent_proc import AgentProcess
from tests.support.env import require_docker
from tests.support.images import offline_image  # noqa: F401 - the session fixture
from tests.support.status_stack import agent_status_keys, status_config
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]

HEARTBEAT = 0.5
# A hang guard on each router call, not a speed check: Create starts a container, which takes
# longer than 5 s on a loaded machine.
CALL_TIMEOUT = 30.0


@dataclass
class Hooked:
    """One real agent, the status service posting to ``posts``, a router."""

    agent: AgentProcess
    router: Router
    server: StatusServer
    posts: list[str] = field(default_factory=list)


@pytest.fixture
async def hooked(offline_image: str) -> AsyncIterator[Hooked]:  # noqa: F811 - fixture injection
    """A webhook receiver on 127.0.0.1, the status service posting to it, a real agent on 127.0.0.2."""
    require_docker()
    posts: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        posts.append(await request.text())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    with tempfile.TemporaryDirectory(prefix="cva-") as d:
        root = Path(d)
        config = replace(status_config(root / "shell", HEARTBEAT), webhook_url=url,
                         webhook_template='{"name": "{name}", "agent": "{agent}", "wait": {wait_seconds}}')
        server = StatusServer(config)
        await server.start()
        agent: AgentProcess | None = None
        try:
            agent_id = new_agent_id()
            key, known = agent_status_keys(config, root / "a2" / "status", agent_id)
            agent = AgentProcess(root / "a2", agent_id=agent_id, host="127.0.0.2", image=offline_image,
                                 name="a2", config={"status_host": config.host, "status_port": config.port,
                                         "status_client_key": key, "status_known_hosts": known,
                                         "heartbeat_interval": HEARTBEAT})
            register_agent(root / "registry", agent.agent_id, agent.host, agent.port, agent.keys.client_key,
                           Path(f"{agent.keys.host_key}.pub").read_text())
            await asyncio.to_thread(agent.start)
            router_config = RouterConfig(registry_dir=root / "registry", runtime_dir=root / "run",
                                         orphans_root=None, status_socket=config.socket,
                                         heartbeat_interval=HEARTBEAT, call_timeout=CALL_TIMEOUT,
                                         list_timeout=1.0, connect_timeout=1.0, keepalive_interval=0.5,
                                         backoff_max=0.5)
            async with Router(router_config) as router:
                yield Hooked(agent, router, server, posts)
        finally:
            if agent is not None:
                agent.close()
            await server.stop(grace=0)
            await runner.cleanup()


async def _screen(h: Hooked, session_id: str, needle: str) -> str:
    """Peek until the screen shows ``needle``; return the screen."""
    async def shows() -> str:
        text = (await h.router.peek(session_id)).text
        return text if needle in text else ""
    result: str = await assert_eventually(shows, timeout=30, interval=0.3)
    return result


def _activity(h: Hooked, session_id: str) -> str:
    row = next((r for r in h.router.rows() if r.id == session_id), None)
    return row.activity if row is not None else ""


async def test_working_needs_input_idle_in_the_table_the_webhook_and_through_peek_and_reply(
    hooked: Hooked,
) -> None:
    """Reply drives the stand-in CLI through its states; the console's table orders and counts; the
    webhook gets exactly one post per wait; peek shows what the screen shows, at the session's size."""
    h = hooked
    await assert_eventually(lambda: any(a.reachable for a in h.router.agents()), timeout=20)
    calm = await h.router.create(h.agent.agent_id, "calm", 0, "tcp", "", start=True)
    asks = await h.router.create(h.agent.agent_id, "asks", 0, "tcp", "", start=True)
    await _screen(h, asks.id, "$")
    await _screen(h, calm.id, "$")

    # Peek reads the screen read-only: the session keeps its own size.
    await h.router.reply(asks.id, "stty size; echo size-shown")
    before = await _screen(h, asks.id, "size-shown")
    size = next(line for line in before.splitlines() if line.strip() and line.strip()[0].isdigit())
    for _ in range(3):
        await h.router.peek(asks.id)
    await h.router.reply(asks.id, "stty size; echo size-again")
    after = await _screen(h, asks.id, "size-again")
    assert after.count(size.strip()) >= 2, after

    # working -> needs input: the row sorts first, the title counts it, the webhook posts once.
    await h.router.reply(asks.id, ":prompt please")
    await assert_eventually(lambda: _activity(h, asks.id) == "working", timeout=20)
    await h.router.reply(asks.id, ":permit Bash")
    await assert_eventually(lambda: _activity(h, asks.id) == "needs_input", timeout=20)
    state = ConsoleState(h.router)
    assert [t.row.name for t in state.table()] == ["asks", "calm"]
    assert [r.name for r in state.waiting()] == ["asks"]
    line = format_row(state.table()[0], columns_for(80))
    assert " input " in line
    await assert_eventually(lambda: len(h.posts) == 1, timeout=20)
    assert '"name": "asks"' in h.posts[0]
    assert f'"agent": "{h.agent.agent_id}"' in h.posts[0]

    # Answered (the stand-in's Stop): idle, nobody waits; no second post.
    await h.router.reply(asks.id, ":done")
    await assert_eventually(lambda: _activity(h, asks.id) == "idle", timeout=20)
    assert ConsoleState(h.router).waiting() == []

    # A new wait is a new transition: exactly one more post.
    await h.router.reply(asks.id, ":ask which file")
    await assert_eventually(lambda: _activity(h, asks.id) == "needs_input", timeout=20)
    await assert_eventually(lambda: len(h.posts) == 2, timeout=20)
    assert h.server.webhook is not None
    assert h.server.webhook.posted == 2
    assert h.server.webhook.failed == h.server.webhook.dropped == 0
    assert _activity(h, calm.id) != "needs_input"

"""A real status service (SSH + gRPC on loopback), stand-in agent processes and a router."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shell.fleet.router import Router, RouterConfig
from tests.support.fleet import AgentProc, prepare_agent
from tests.support.status_stack import StatusStack, start_status_stack

HEARTBEAT = 0.5


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        yield Path(d)


@pytest.fixture
async def status(short_tmp: Path) -> AsyncIterator[StatusStack]:
    """An in-process status service on 127.0.0.1 (0.5 s heartbeats) probing the fleet's registry."""
    stack = await start_status_stack(
        short_tmp / "shell", heartbeat_interval=HEARTBEAT, registry_dir=short_tmp / "registry"
    )
    try:
        yield stack
    finally:
        await stack.server.stop(grace=0)


@dataclass
class Fleet:
    """Three agents, the status service, and a started router over them."""

    status: StatusStack
    agents: dict[str, AgentProc]
    router: Router
    config: RouterConfig


def router_config(root: Path, status: StatusStack) -> RouterConfig:
    """A RouterConfig with test-sized heartbeats, deadlines and backoff."""
    (root / "dns").mkdir(parents=True, exist_ok=True)
    return RouterConfig(
        registry_dir=root / "registry",
        runtime_dir=root / "run",
        orphans_root=root / "orphans",
        dnsmasq_hosts=root / "dns" / "hosts",
        status_socket=status.config.socket,
        heartbeat_interval=HEARTBEAT,
        call_timeout=2.0,
        list_timeout=1.0,
        connect_timeout=1.0,
        keepalive_interval=0.5,
        backoff_max=0.5,
        registry_poll=0.5,
        client_id="console:test",
    )


@pytest.fixture
async def fleet(short_tmp: Path, status: StatusStack) -> AsyncIterator[Fleet]:
    """Agents a, b, c on 127.0.0.2-4 (real processes), reporting to ``status``, and a router."""
    config = router_config(short_tmp, status)
    agents = {}
    try:
        for i in range(3):
            agent = prepare_agent(short_tmp / "agents", config.registry_dir, i, status.config, HEARTBEAT)
            agents[agent.agent_id] = agent
        await asyncio.gather(*(a.astart() for a in agents.values()))
        async with Router(config) as router:
            yield Fleet(status, agents, router, config)
    finally:
        for agent in agents.values():
            agent.kill()

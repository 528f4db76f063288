"""A real status service (SSH + gRPC on loopback), agent processes on the fake runtime and a router."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shell.fleet.router import Router, RouterConfig
from tests.support.agent_proc import AgentProcess
from tests.support.fleet import prepare_agent
from tests.support.status_stack import StatusStack, start_status_stack
from tests.support.tcp_proxy import TcpProxy

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
    """Three agents, the status service, and a started router over them.

    The shell (router and status prober) reaches each agent through ``proxies[agent_id]``,
    which a test cuts to break those connections from outside.
    """

    status: StatusStack
    agents: dict[str, AgentProcess]
    router: Router
    config: RouterConfig
    proxies: dict[str, TcpProxy]


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
    agents: dict[str, AgentProcess] = {}
    proxies: dict[str, TcpProxy] = {}
    try:
        for i in range(3):
            proxy = TcpProxy(f"127.0.0.{i + 2}", 0, listen_host=f"127.0.0.{i + 2}")
            await proxy.start()
            agent = prepare_agent(short_tmp / "agents", config.registry_dir, i, status.config, HEARTBEAT,
                                  registered_port=proxy.port)
            proxy.target = (agent.host, agent.port)
            agents[agent.agent_id], proxies[agent.agent_id] = agent, proxy
        await asyncio.gather(*(a.astart() for a in agents.values()))
        async with Router(config) as router:
            yield Fleet(status, agents, router, config, proxies)
    finally:
        await asyncio.gather(*(a.astop(5) for a in agents.values()))
        for proxy in proxies.values():
            await proxy.aclose()

"""Real ``convocate-agent serve`` processes on 127.0.0.2/3 with the status service and the router."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.identity import new_agent_id
from common.registry import register_agent
from shell.fleet.dns import HEADER
from shell.fleet.router import Router, RouterConfig
from tests.support.agent_proc import AgentProcess
from tests.support.env import require_docker
from tests.support.images import offline_image  # noqa: F401 - the session fixture
from tests.support.status_stack import StatusStack, agent_status_keys, start_status_stack
from tests.support.waiting import assert_eventually

HEARTBEAT = 0.5


@dataclass
class RealFleet:
    """Two real agents, the status service and a router over them."""

    status: StatusStack
    agents: list[AgentProcess]
    router: Router
    config: RouterConfig


@pytest.fixture
async def real_fleet(offline_image: str) -> AsyncIterator[RealFleet]:  # noqa: F811 - fixture injection
    """Agents on 127.0.0.2 and 127.0.0.3 reporting to an in-process status service, and a router."""
    require_docker()
    with tempfile.TemporaryDirectory(prefix="cve-") as d:
        root = Path(d)
        status = await start_status_stack(root / "shell", heartbeat_interval=HEARTBEAT)
        agents: list[AgentProcess] = []
        config = RouterConfig(
            registry_dir=root / "registry",
            runtime_dir=root / "run",
            orphans_root=root / "orphans",
            dnsmasq_hosts=root / "hosts",
            status_socket=status.config.socket,
            heartbeat_interval=HEARTBEAT,
            call_timeout=5.0,
            list_timeout=1.0,
            connect_timeout=1.0,
            keepalive_interval=0.5,
            backoff_max=0.5,
        )
        try:
            for i in (2, 3):
                agent_root = root / f"a{i}"
                agent_root.mkdir()
                agent_id = new_agent_id()
                key, known = agent_status_keys(status.config, agent_root / "status", agent_id)
                agent = AgentProcess(
                    agent_root,
                    agent_id=agent_id,
                    host=f"127.0.0.{i}",
                    image=offline_image,
                    name=f"a{i}",
                    config={
                        "status_host": status.config.host,
                        "status_port": status.config.port,
                        "status_client_key": key,
                        "status_known_hosts": known,
                        "heartbeat_interval": HEARTBEAT,
                    },
                )
                agents.append(agent)
                register_agent(
                    config.registry_dir,
                    agent.agent_id,
                    agent.host,
                    agent.port,
                    agent.keys.client_key,
                    Path(f"{agent.keys.host_key}.pub").read_text(),
                )
            for agent in agents:
                await _start(agent)
            async with Router(config) as router:
                yield RealFleet(status, agents, router, config)
        finally:
            for agent in agents:
                agent.close()
            await status.server.stop(grace=0)


async def _start(agent: AgentProcess) -> None:
    await asyncio.to_thread(agent.start)  # the in-process status service keeps serving meanwhile


def _healthy(fleet: RealFleet) -> bool:
    return all(a.reachable and a.status_connected and not a.notices for a in fleet.router.agents())


def _dns(fleet: RealFleet) -> list[str]:
    assert fleet.config.dnsmasq_hosts is not None
    return fleet.config.dnsmasq_hosts.read_text().splitlines()


async def test_real_agents_sessions_dns_and_a_killed_agent(real_fleet: RealFleet) -> None:
    """Sessions on two real agents list together, DNS follows every change, and a killed agent comes back."""
    fleet = real_fleet
    await assert_eventually(lambda: _healthy(fleet), timeout=15)
    a, b = fleet.agents
    one = await fleet.router.create(a.agent_id, "one", 0, "tcp", "one")
    two = await fleet.router.create(b.agent_id, "two", 0, "tcp", "two")
    z = ".convocate.internal"  # single labels are placed in the session zone
    assert _dns(fleet) == [HEADER, f"127.0.0.2\tone{z}", f"127.0.0.3\ttwo{z}"]
    await fleet.router.update(two.id, "two", 0, "tcp", "deux")
    clone = await fleet.router.clone(one.id, "uno")
    assert clone.agent_id == a.agent_id
    await fleet.router.update(clone.id, "uno", 0, "tcp", "uno")
    await fleet.router.delete(one.id)
    assert _dns(fleet) == [HEADER, f"127.0.0.3\tdeux{z}", f"127.0.0.2\tuno{z}"]
    await assert_eventually(lambda: {r.id for r in fleet.router.rows()} == {two.id, clone.id})

    budget = fleet.status.config.heartbeat_budget
    t0 = time.monotonic()
    b.kill()
    await fleet.status.wait_health(b.agent_id, lambda h: not h.connected, timeout=budget)
    detect = time.monotonic() - t0
    t1 = time.monotonic()
    rows = await fleet.router.refresh()
    listed = time.monotonic() - t1
    print(f"real agent killed: view marked it down after {detect:.3f} s; list took {listed:.3f} s")
    assert clone.id in {r.id for r in rows}
    assert listed < fleet.config.list_timeout + 0.5
    await _start(b)
    await assert_eventually(lambda: _healthy(fleet), timeout=15)
    await assert_eventually(lambda: two.id in {r.id for r in fleet.router.rows() if not r.placeholder})

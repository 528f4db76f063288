"""The router over real agent processes: merged lists, routing, DNS and the shared view."""

from __future__ import annotations

import time
from pathlib import Path

from shell.dns import HEADER
from shell.model import RouterAPI
from tests.integration.status.conftest import Fleet
from tests.support.waiting import assert_eventually


def _hosts(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_router_lists_every_agent_and_routes_by_session_id(fleet: Fleet) -> None:
    """Sessions made on three agents appear in one list, each operation reaches its owner, DNS follows."""
    router: RouterAPI = fleet.router
    await assert_eventually(lambda: all(a.reachable and a.status_connected for a in router.agents()))
    made = {}
    for agent_id in fleet.agents:
        made[agent_id] = await router.create(agent_id, f"s-{agent_id}", 0, "tcp", f"{agent_id}-web")
    assert {r.agent_id for r in router.rows()} == set(fleet.agents)
    hosts = fleet.config.dnsmasq_hosts
    assert hosts is not None
    assert _hosts(hosts) == [HEADER, *(f"127.0.0.{i + 2}\tagent-{c}-web" for i, c in enumerate("abc"))]

    b = made["agent-b"]
    updated = await router.update(b.id, "renamed", 8080, "tcp", "renamed-b")
    assert (updated.name, updated.agent_id) == ("renamed", "agent-b")
    clone = await router.clone(b.id, "copy")
    assert clone.agent_id == "agent-b"
    await router.update(clone.id, "copy", 0, "tcp", "copy-b")
    await router.delete(made["agent-a"].id)
    assert _hosts(hosts) == [HEADER, "127.0.0.4\tagent-c-web", "127.0.0.3\tcopy-b", "127.0.0.3\trenamed-b"]
    assert made["agent-a"].id not in {r.id for r in router.rows()}
    await router.restart(b.id)
    assert any(r.id == b.id and r.running for r in router.rows())
    await router.kill(b.id)
    assert any(r.id == b.id and not r.running for r in router.rows())


async def test_killed_agent_is_marked_down_lists_stay_prompt_and_it_comes_back(fleet: Fleet) -> None:
    """A SIGKILLed agent is marked down within the heartbeat budget; the others still list; it returns."""
    router = fleet.router
    await assert_eventually(lambda: all(a.reachable and a.status_connected for a in router.agents()))
    for agent_id in fleet.agents:
        await router.create(agent_id, f"s-{agent_id}", 0, "tcp", "")
    budget = fleet.status.config.heartbeat_budget
    t0 = time.monotonic()
    fleet.agents["agent-b"].kill()
    await fleet.status.wait_health("agent-b", lambda h: not h.connected, timeout=budget)
    view_latency = time.monotonic() - t0
    await assert_eventually(
        lambda: not next(a for a in router.agents() if a.agent_id == "agent-b").reachable, timeout=budget
    )
    router_latency = time.monotonic() - t0
    t1 = time.monotonic()
    rows = await router.refresh()
    list_latency = time.monotonic() - t1
    print(f"dead agent: view {view_latency:.3f} s, router {router_latency:.3f} s; list {list_latency:.3f} s")
    assert list_latency < 1.0
    assert {r.agent_id for r in rows if not r.placeholder} == {"agent-a", "agent-b", "agent-c"}
    assert [r.agent_id for r in rows if r.placeholder] == ["agent-b"]

    await fleet.agents["agent-b"].astart()
    await assert_eventually(
        lambda: all(a.reachable and a.status_connected for a in router.agents()), timeout=10
    )
    assert not any(r.placeholder for r in router.rows())

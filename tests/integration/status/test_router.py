"""The router over real agent processes: merged lists, routing, DNS and the shared view."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.registry import unregister_agent
from shell.fleet.dns import HEADER
from shell.fleet.model import RouterAPI
from shell.fleet.router import Router
from tests.integration.status.conftest import Fleet
from tests.support.fleet import prepare_agent
from tests.support.waiting import assert_eventually

Z = ".convocate.internal"  # the session DNS zone


def _hosts(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_router_lists_every_agent_and_routes_by_session_id(fleet: Fleet) -> None:
    """Sessions made on three agents appear in one list, each operation reaches its owner, DNS follows."""
    router: RouterAPI = fleet.router
    await assert_eventually(lambda: all(a.reachable and a.status_connected for a in router.agents()))
    made = {}
    for agent_id in fleet.agents:
        made[agent_id] = await router.create(agent_id, f"s-{agent_id}", 0, "tcp", f"{agent_id}-web{Z}")
    assert {r.agent_id for r in router.rows()} == set(fleet.agents)
    hosts = fleet.config.dnsmasq_hosts
    assert hosts is not None
    assert _hosts(hosts) == [HEADER, *(f"127.0.0.{i + 2}\tagent-{c}-web{Z}" for i, c in enumerate("abc"))]

    b = made["agent-b"]
    updated = await router.update(b.id, "renamed", 8080, "tcp", f"renamed-b{Z}")
    assert (updated.name, updated.agent_id) == ("renamed", "agent-b")
    clone = await router.clone(b.id, "copy")
    assert clone.agent_id == "agent-b"
    await router.update(clone.id, "copy", 0, "tcp", f"copy-b{Z}")
    await router.delete(made["agent-a"].id)
    assert _hosts(hosts) == [HEADER, f"127.0.0.4\tagent-c-web{Z}", f"127.0.0.3\tcopy-b{Z}",
                             f"127.0.0.3\trenamed-b{Z}"]
    assert made["agent-a"].id not in {r.id for r in router.rows()}
    await router.restart(b.id)
    assert any(r.id == b.id and r.running for r in router.rows())
    await router.kill(b.id)
    assert any(r.id == b.id and not r.running for r in router.rows())


async def test_killed_agent_is_marked_down_lists_stay_prompt_and_it_comes_back(fleet: Fleet) -> None:
    """A SIGKILLed agent is marked down within the heartbeat budget; the others still list; it returns."""
    router = fleet.router
    await assert_eventually(lambda: all(a.reachable and a.status_connected for a in router.agents()))
    assert all(a.health is not None and a.health.engine_up for a in router.agents())  # from Ping
    for agent_id in fleet.agents:
        await router.create(agent_id, f"s-{agent_id}", 0, "tcp", f"{agent_id}-dns{Z}")
    budget = fleet.status.config.heartbeat_budget
    t0 = time.monotonic()
    fleet.agents["agent-b"].kill()
    h = await fleet.status.wait_health("agent-b", lambda h: not h.connected, timeout=budget)
    view_latency = time.monotonic() - t0
    assert "ended without agent.shutdown" in h.status_link.last_error
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
    lost = [r for r in rows if r.agent_id == "agent-b" and not r.placeholder]
    assert [(r.status_letter, r.known_at is not None) for r in lost] == [("?", True)]  # no longer a fact
    assert not any(r.unknown for r in rows if r.agent_id != "agent-b")
    hosts = fleet.config.dnsmasq_hosts
    assert hosts is not None
    assert "127.0.0.3\tagent-b-dns" in hosts.read_text()  # an unreachable agent keeps its records

    await fleet.agents["agent-b"].astart()
    await assert_eventually(
        lambda: all(a.reachable and a.status_connected for a in router.agents()), timeout=10
    )
    assert not any(r.placeholder for r in router.rows())


async def test_unreachable_agent_never_stalls_and_changes_arrive_live(fleet: Fleet, short_tmp: Path) -> None:
    """A down agent is one placeholder row at once; others' changes stream in; a missing view is said."""
    prepare_agent(short_tmp / "agents", fleet.config.registry_dir, 3, fleet.status.config)  # never started
    second = Router(
        replace(
            fleet.config,
            runtime_dir=short_tmp / "run2",
            dnsmasq_hosts=None,
            status_socket=short_tmp / "no-status.sock",
        )
    )
    t0 = time.monotonic()
    await second.start()
    try:
        assert time.monotonic() - t0 < 0.5
        await assert_eventually(lambda: [r.agent_id for r in second.rows() if r.placeholder] == ["agent-d"])
        await assert_eventually(
            lambda: "agent-d (127.0.0.5" in next(r for r in second.rows() if r.placeholder).error, timeout=3
        )
        made = await fleet.router.create("agent-a", "from-elsewhere", 0, "tcp", "")
        await assert_eventually(lambda: made.id in {r.id for r in second.rows()}, timeout=3)
        await fleet.router.restart(made.id)
        await assert_eventually(lambda: any(r.id == made.id and r.running for r in second.rows()), timeout=3)
        # Without a status service the shared view is missing, and every agent row says so.
        assert all(a.notices[0].startswith("shared health view unavailable") for a in second.agents())
    finally:
        await second.close()


async def test_orphans_are_listed_writes_refused_and_delete_allowed(fleet: Fleet) -> None:
    """Pre-v2 session directories on the shell host show as O rows; only delete is accepted."""
    root = fleet.config.orphans_root
    assert root is not None
    sid = str(uuid.uuid4())
    (root / sid).mkdir(parents=True)
    (root / sid / "session.json").write_text(json.dumps({"uuid": sid, "name": "legacy", "dns_name": "old"}))
    rows = await fleet.router.refresh()
    orphan = next(r for r in rows if r.id == sid)
    assert (orphan.status_letter, orphan.agent_id) == ("O", "")
    for op in (
        fleet.router.update(sid, "x", 0, "tcp", ""),
        fleet.router.clone(sid, "x"),
        fleet.router.kill(sid),
        fleet.router.restart(sid),
        fleet.router.background(sid),
    ):
        with pytest.raises(FailedPreconditionError, match="convocate-host migrate-session"):
            await op
    with pytest.raises(FailedPreconditionError, match="migrate"):
        fleet.router.attach_call(sid)
    hosts = fleet.config.dnsmasq_hosts
    assert hosts is not None
    assert "old" not in hosts.read_text()
    await fleet.router.delete(sid)
    assert not (root / sid).exists()
    assert sid not in {r.id for r in fleet.router.rows()}
    with pytest.raises(NotFoundError):
        await fleet.router.delete(sid)


async def test_registry_changes_are_picked_up_and_bad_entries_shown(fleet: Fleet, short_tmp: Path) -> None:
    """An agent registered later joins, a malformed entry is shown as such, an unregistered agent leaves."""
    late = prepare_agent(short_tmp / "agents", fleet.config.registry_dir, 3, fleet.status.config)
    try:
        await late.astart()
        bad = fleet.config.registry_dir / "broken"
        bad.mkdir()
        (bad / "agent.toml").write_text('id = "broken"\naddress = "127.0.0.9"\nport = 0\n')
        await assert_eventually(
            lambda: {a.agent_id: a.reachable for a in fleet.router.agents()}.get("agent-d") is True, timeout=5
        )
        made = await fleet.router.create("agent-d", "late", 0, "tcp", "late")
        assert made.agent_id == "agent-d"
        await assert_eventually(lambda: "broken" in {a.agent_id for a in fleet.router.agents()}, timeout=3)
        broken = next(a for a in fleet.router.agents() if a.agent_id == "broken")
        assert "invalid registry entry" in broken.last_error
        assert "not a TCP port" in broken.last_error
        assert any(r.placeholder and r.agent_id == "broken" for r in fleet.router.rows())
        with pytest.raises(InvalidArgumentError, match="invalid registry entry"):
            await fleet.router.create("broken", "x", 0, "tcp", "")
        unregister_agent(fleet.config.registry_dir, "agent-d")
        await fleet.router.refresh()
        assert "agent-d" not in {a.agent_id for a in fleet.router.agents()}
        assert made.id not in {r.id for r in fleet.router.rows()}
    finally:
        late.kill()


async def test_an_unchanged_listing_keeps_the_rows_and_a_row_lost_behind_the_cache_comes_back(
        fleet: Fleet) -> None:
    """Listing agents whose sessions did not change changes nothing (the agents stamp a new read time
    at every list); a row the cache lost without its agent saying so comes back at the next refresh."""
    router = fleet.router
    await assert_eventually(lambda: all(a.reachable for a in router.agents()))
    made = {a: await router.create(a, f"s-{a}", 0, "tcp", "") for a in fleet.agents}
    for _ in range(20):   # the watch streams' events for the creates may still arrive
        if not await router.fleet.list_all(2.0):
            break
    held = {agent_id: router.fleet.sessions[agent_id].get(s.id) for agent_id, s in made.items()}
    assert not await router.fleet.list_all(2.0)
    assert all(router.fleet.sessions[a].get(s.id) is held[a] for a, s in made.items())  # not rebuilt

    lost = made["agent-b"]
    assert router.fleet.sessions["agent-b"].remove(lost.id)   # as if an event had been missed
    assert lost.id not in {r.id for r in router.rows()}
    rows = await router.refresh()
    assert lost.id in {r.id for r in rows if r.agent_id == "agent-b"}

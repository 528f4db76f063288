"""One direction of a shell <-> agent pair broken at a time: the notice names it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from common.ssh_keys import add_authorized_key
from shell.fleet.model import AgentRow
from shell.status.server import StatusServer
from tests.integration.status.conftest import Fleet
from tests.support.fleet import status_key_path
from tests.support.waiting import assert_eventually


def _agent(fleet: Fleet, agent_id: str) -> AgentRow:
    return next(a for a in fleet.router.agents() if a.agent_id == agent_id)


async def _all_healthy(fleet: Fleet) -> None:
    await assert_eventually(
        lambda: all(a.reachable and a.status_connected and not a.notices for a in fleet.router.agents()),
        timeout=10,
    )


async def test_status_direction_down_is_reported_through_the_control_direction(fleet: Fleet) -> None:
    """With the status SSH server stopped, the shared view says agent→shell is down and shell→agent alive."""
    await _all_healthy(fleet)
    ssh = fleet.status.server.ssh
    ssh.close()
    await ssh.wait_closed()
    h = await fleet.status.wait_health(
        "agent-a",
        lambda h: any(n.startswith("agent→shell status stream down: agent says") for n in h.notices),
    )
    assert not h.connected
    assert any("(shell→agent link alive)" in n for n in h.notices)
    await assert_eventually(lambda: _agent(fleet, "agent-a").notices, timeout=5)
    row = _agent(fleet, "agent-a")
    assert row.reachable
    assert not row.status_connected
    assert "agent→shell status stream down" in row.notices[0]

    await ssh.start()
    await _all_healthy(fleet)

    # Only agent-b's status key revoked: only agent-b's row says its status stream is refused.
    authorized = fleet.status.config.authorized_keys
    saved = authorized.read_text()
    b_key_file = Path(f"{status_key_path(fleet.agents['agent-b'])}.pub")
    b_key = b_key_file.read_text().split()[1]
    authorized.write_text("".join(line + "\n" for line in saved.splitlines() if b_key not in line))
    ssh.close()
    await ssh.wait_closed()
    await ssh.start()
    h = await fleet.status.wait_health(
        "agent-b",
        lambda h: any("refused our key" in n and "(shell→agent link alive)" in n for n in h.notices),
    )
    assert not h.connected
    await assert_eventually(
        lambda: all(a.status_connected for a in fleet.router.agents() if a.agent_id != "agent-b"), timeout=5
    )
    authorized.write_text(saved)
    await _all_healthy(fleet)


async def test_control_direction_down_is_reported_through_the_status_direction(fleet: Fleet) -> None:
    """With the shell's key refused by an agent, the notice says shell→agent is down, agent→shell alive."""
    await _all_healthy(fleet)
    agent = fleet.agents["agent-a"]
    authorized = agent.keys.authorized_keys
    saved = authorized.read_text()
    authorized.write_text("")
    prober = fleet.status.server.prober  # the status service pings too: its link is cut as well
    assert prober is not None
    await assert_eventually(lambda: "agent-a" in prober.clients)
    fleet.proxies["agent-a"].cut()  # both shell -> agent connections reset on the wire
    h = await fleet.status.wait_health(
        "agent-a", lambda h: any(n.startswith("shell→agent link down") and "key" in n for n in h.notices)
    )
    notice = next(n for n in h.notices if n.startswith("shell→agent"))
    assert "refused our key" in notice
    assert notice.endswith("(agent→shell status stream alive)")
    assert h.connected
    # The agent itself notices the missing Pings and says so over its status stream.
    await fleet.status.wait_health(
        "agent-a", lambda h: any(e.type == "link.control_stale" for e in h.recent_events), timeout=5
    )
    row = _agent(fleet, "agent-a")
    assert (row.reachable, row.status_connected) == (False, True)
    assert _agent(fleet, "agent-b").notices == ()

    authorized.write_text(saved)
    add_authorized_key(authorized, saved.split("\n")[0])
    await _all_healthy(fleet)


async def test_frozen_agent_goes_stale_within_the_budget_and_lists_keep_their_deadline(fleet: Fleet) -> None:
    """A SIGSTOPped agent is stale within the heartbeat budget and a list waits at most its deadline."""
    await _all_healthy(fleet)
    for agent_id in fleet.agents:
        await fleet.router.create(agent_id, f"s-{agent_id}", 0, "tcp", "")
    proc = fleet.agents["agent-c"].proc
    assert proc is not None
    budget = fleet.status.config.heartbeat_budget
    t0 = time.monotonic()
    proc.send_signal(signal.SIGSTOP)
    try:
        await fleet.status.wait_health("agent-c", lambda h: h.heartbeat_stale, timeout=budget + 1.0)
        stale_after = time.monotonic() - t0
        t1 = time.monotonic()
        rows = await fleet.router.refresh()
        list_latency = time.monotonic() - t1
        print(f"frozen agent: stale after {stale_after:.3f} s (budget {budget} s); list {list_latency:.3f} s")
        assert list_latency < fleet.config.list_timeout + 0.7
        assert {"agent-a", "agent-b"} <= {r.agent_id for r in rows if not r.placeholder}
        await assert_eventually(lambda: not _agent(fleet, "agent-c").reachable, timeout=5)
    finally:
        proc.send_signal(signal.SIGCONT)
    await _all_healthy(fleet)


async def test_restarted_status_service_is_refilled_by_agents_and_local_clients(fleet: Fleet) -> None:
    """After the status service restarts, agents reconnect and the router re-reports its links unasked."""
    await _all_healthy(fleet)
    await fleet.status.server.stop(grace=0)
    await assert_eventually(lambda: all(a.notices for a in fleet.router.agents()), timeout=5)
    fleet.status.server = StatusServer(fleet.status.config)
    await fleet.status.server.start()
    for agent_id in fleet.agents:
        await fleet.status.wait_health(agent_id, lambda h: h.connected and h.control_link.known, timeout=10)
    await _all_healthy(fleet)

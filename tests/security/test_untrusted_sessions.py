"""Security review finding 8: the shell does not trust what an agent says about ownership.

agent-a is the real agent server (fake runtime) with one session made through the
router. agent-b is compromised (the production SSH and gRPC servers, hostile answers):
it claims agent-a's session id, says some of its sessions are agent-a's, sends ids
that are not canonical UUIDs, and floods its snapshot. The real router must keep
routing agent-a's session to agent-a, file every session under the agent that
answered, drop the bad ids with a logged error, and hold at most the cap.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from convocate.v1 import sessions_pb2

from shell.fleet import session_cache
from shell.fleet.router import Router, RouterConfig
from tests.support.agent_proc import AgentProcess
from tests.support.fleet import prepare_agent
from tests.support.hostile_agent import HostileAgent
from tests.support.waiting import assert_eventually

CAP = 50


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvus-") as d:
        yield Path(d)


@pytest.fixture
async def victim(short_tmp: Path) -> AsyncIterator[AgentProcess]:
    """agent-a: the real agent server on the fake runtime, registered."""
    agent = prepare_agent(short_tmp / "agents", short_tmp / "registry", 0, None)
    try:
        await agent.astart()
        yield agent
    finally:
        await agent.astop(5)


def _session(sid: str, name: str, agent_id: str = "agent-b") -> sessions_pb2.Session:
    return sessions_pb2.Session(id=sid, name=name, agent_id=agent_id, protocol="tcp")


async def test_a_compromised_agent_cannot_claim_or_forge_sessions(
    victim: AgentProcess, short_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """agent-a's session stays agent-a's; agent-b's claims are filed under agent-b or dropped."""
    monkeypatch.setattr(session_cache, "MAX_SESSIONS", CAP)
    config = RouterConfig(registry_dir=short_tmp / "registry", runtime_dir=short_tmp / "run",
                          heartbeat_interval=0.5, call_timeout=3.0, list_timeout=2.0, connect_timeout=1.0,
                          keepalive_interval=0.5, backoff_max=0.5, registry_poll=0, client_id="console:test")
    async with Router(config) as router:
        await assert_eventually(lambda: router.clients["agent-a"].reachable, timeout=15)
        mine = await router.create("agent-a", "mine", 0, "tcp", "")
        own = str(uuid.uuid4())
        claims = [
            _session(mine.id, "stolen", agent_id="agent-a"),       # agent-a's session, claimed
            _session(own, "forged owner", agent_id="agent-a"),      # its own, said to be agent-a's
            _session("../../etc/passwd", "traversal"),
            _session(str(uuid.uuid4()).upper(), "not canonical"),
            _session("", "empty"),
        ]
        claims += [_session(str(uuid.uuid4()), f"flood {i}") for i in range(3 * CAP)]
        async with HostileAgent(short_tmp, config.registry_dir, "agent-b", "127.0.0.3", claims):
            await router.refresh()  # reads the registry: agent-b joins
            await assert_eventually(lambda: any(r.id == own for r in router.rows()), timeout=15)
            rows = router.rows()
            by_id = {r.id: r for r in rows if not r.placeholder}
            # The victim's session is still the victim's, and operations go to the victim.
            assert by_id[mine.id].agent_id == "agent-a"
            assert by_id[mine.id].name == "mine"
            assert router._route(mine.id, "attach").agent_id == "agent-a"
            restarted = await router.restart(mine.id)
            assert (restarted.agent_id, restarted.running) == ("agent-a", True)
            # What agent-b answered is agent-b's, whatever it claims; bad ids never become rows.
            assert by_id[own].agent_id == "agent-b"
            assert not {"../../etc/passwd", "", claims[3].id} & set(by_id)
            b_rows = [r for r in rows if r.agent_id == "agent-b" and not r.placeholder]
            assert len(b_rows) <= CAP
            assert all(r.agent_id in ("agent-a", "agent-b") for r in rows)
    logged = " ".join(str(r.msg) for r in caplog.records if "session from agent refused" in str(r.msg))
    assert "already belongs to agent agent-a" in logged
    assert "not a canonical UUID" in logged
    assert "claims agent agent-a" in logged
    assert f"more than {CAP}" in logged

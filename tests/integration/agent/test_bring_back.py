"""Bring back: at its start the agent restarts sessions that should run but lost their container.

A host's stop/start (or an engine restart while the agent is down) removes the session
containers (they are auto-removed). The record keeps the desired state: running after a
start, stopped only after an operator's stop. A new agent process starts what should run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent.conftest import open_client
from tests.support.agent_proc import AgentProcess

pytestmark = [pytest.mark.docker]


@pytest.fixture
def own_agent(offline_image: str) -> Iterator[AgentProcess]:
    """An agent of its own on 127.0.0.4 (this test stops it and removes its containers)."""
    with tempfile.TemporaryDirectory(prefix="cvb-") as d:
        proc = AgentProcess(Path(d), host="127.0.0.4", image=offline_image, name="bring-back")
        proc.start()
        try:
            yield proc
        finally:
            proc.close()


def _container_id(session_id: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", "{{.Id}} {{.State.Running}}",
                          f"convocate-session-{session_id}"],
                         capture_output=True, text=True, timeout=30, check=False)
    fields = out.stdout.split()
    return fields[0] if out.returncode == 0 and fields[1:] == ["true"] else ""


def _desired(agent: AgentProcess, session_id: str) -> str:
    record = json.loads((agent.sessions_root / session_id / "session.json").read_text())
    return str(record["desired_state"])


async def test_sessions_that_should_run_come_back_and_stopped_ones_stay_stopped(
    own_agent: AgentProcess,
) -> None:
    client = await open_client(own_agent)
    try:
        wanted = [(await client.create(name, start=True)).id for name in ("back-1", "back-2")]
        stopped = (await client.create("stopped-by-operator", start=True)).id
        never = (await client.create("never-started")).id
        await client.kill(stopped)
        assert [_desired(own_agent, s) for s in (*wanted, stopped, never)] == [
            "running", "running", "stopped", "stopped"]
        before = {s: _container_id(s) for s in wanted}
        assert all(before.values()), before

        # The agent stops, then the containers go (as on a host's shutdown); a new agent starts.
        await own_agent.astop()
        own_agent.remove_containers()
        assert not any(_container_id(s) for s in (*wanted, stopped))
        await own_agent.astart()
        await client.tunnel.wait_up(15)

        for s in wanted:
            got = await client.get(s)
            assert got.running, f"session {s} was not brought back: {own_agent.log_text()[-3000:]}"
            assert _container_id(s) not in ("", before[s]), "a new container runs the session"
        for s in (stopped, never):
            assert not (await client.get(s)).running
            assert not _container_id(s)
        assert "session brought back" in own_agent.log_text()

        # An operator's stop sticks across the next restart of the agent.
        await client.kill(wanted[0])
        assert _desired(own_agent, wanted[0]) == "stopped"
        await own_agent.astop()
        await own_agent.astart()
        await client.tunnel.wait_up(15)
        assert not (await client.get(wanted[0])).running
        assert (await client.get(wanted[1])).running
    finally:
        await client.tunnel.close()

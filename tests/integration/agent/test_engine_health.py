"""Honest health against a Docker Engine of the test's own (tests/support/private_dockerd.py).

A real agent on that engine, reporting to a real status service: the engine stopped
shows as engine down (Ping, the shared view, ``convocate-host agents --json`` with the
unreachable exit code), the session as unknown, and R says what to do in one line; the
engine started again shows up, and the session its real state. Three session containers
killed from outside raise one mass-death alarm naming them with their exit codes; three
sessions killed by the operator raise none.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from convocate.v1 import status_pb2

from agent.sessions import container_name
from common.client.calls import AgentCalls
from common.domain import SessionStatus
from common.errors import FailedPreconditionError
from common.registry import register_agent
from common.ssh_keys import read_private_key
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.private_dockerd import PrivateDockerd, private_dockerd  # noqa: F401 - fixture
from tests.support.status_stack import StatusStack, agent_status_keys, start_status_stack
from tests.support.waiting import assert_eventually

HOST = "127.0.0.2"
AGENT_ID = "engine-health"
# A hang guard on each wait for a change to show, not a speed check: nominally a few seconds
# (health_interval 1 s plus the 3 s engine probe), far more on a loaded machine; the test prints
# how long detection took.
DETECT = 30.0


@dataclass
class Rig:
    """The agent on the private engine, a client to it, the status service and the registry."""

    engine: PrivateDockerd
    agent: AgentProcess
    calls: AgentCalls
    status: StatusStack
    registry: Path

    def hostctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``convocate-host <args> --registry R --json`` as a subprocess."""
        return subprocess.run([sys.executable, "-m", "hostctl", *args, "--registry", str(self.registry),
                               "--json", "--timeout", "10"], capture_output=True, text=True, timeout=60,
                              check=False)


@pytest.fixture
async def rig(private_dockerd: PrivateDockerd) -> AsyncIterator[Rig]:  # noqa: F811 - fixture injection
    """Everything a scenario needs, torn down afterwards (containers, agent, status service)."""
    with tempfile.TemporaryDirectory(prefix="cveh-") as d:
        root = Path(d)
        status = await start_status_stack(root / "status", heartbeat_interval=0.5)
        agent = None
        try:
            key, known = agent_status_keys(status.config, root / "a", AGENT_ID)
            image = (await asyncio.to_thread(private_dockerd.docker, "images", "--format",
                                              "{{.Repository}}:{{.Tag}}")).stdout.decode().split()[0]
            agent = AgentProcess(root / "a", host=HOST, image=image, agent_id=AGENT_ID, config={
                "docker_url": private_dockerd.url, "health_interval": 1.0, "heartbeat_interval": 0.5,
                "status_host": status.config.host, "status_port": status.config.port,
                "status_client_key": key, "status_known_hosts": known,
            })
            registry = root / "registry"
            register_agent(registry, AGENT_ID, HOST, agent.port, agent.keys.client_key,
                           read_private_key(agent.keys.host_key))
            await agent.astart()
            async with Tunnel(agent.tunnel_settings()) as tunnel:
                await tunnel.wait_up(15)
                calls = AgentCalls(AGENT_ID, lambda: tunnel.channel, call_timeout=20)
                yield Rig(private_dockerd, agent, calls, status, registry)
        finally:
            if agent is not None:
                await agent.astop()
            await status.server.stop()
            if not private_dockerd.answers():
                await asyncio.to_thread(private_dockerd.start)
            ids = private_dockerd.docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                await asyncio.to_thread(private_dockerd.docker, "rm", "-f", *ids, check=False)


async def test_engine_down_is_reported_and_sessions_are_unknown_until_it_is_back(rig: Rig) -> None:
    """Stop the engine: engine down within seconds everywhere, exit 3, unknown, R's one line; start it."""
    session = await rig.calls.create("alive", 0, "tcp", "", start=True)
    assert session.status is SessionStatus.RUNNING
    info = await rig.calls.ping()
    assert info.health is not None
    assert info.health.engine_up
    assert info.health.engine_version.startswith("20.")
    assert info.health.disk_total_bytes > 0
    assert info.health.mem_total_bytes > 0
    up = await asyncio.to_thread(rig.hostctl, "agents")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)[0]["health"]["engine_up"] is True

    stopped_at = time.monotonic()
    stopping = asyncio.create_task(asyncio.to_thread(rig.engine.stop))  # SIGTERM, then it winds down
    down = await assert_eventually(lambda: _engine_down(rig), timeout=DETECT)
    detected = time.monotonic() - stopped_at
    await stopping
    assert "does not answer" in down.engine_error
    unknown = await rig.calls.get(session.id)
    assert unknown.state_unknown
    assert unknown.status is SessionStatus.UNKNOWN
    assert unknown.state_known_at is not None
    with pytest.raises(FailedPreconditionError) as refused:
        await rig.calls.restart(session.id)
    assert str(refused.value) == (f"the Docker Engine on agent {AGENT_ID} does not answer: "
                                  "start it with `systemctl start docker`")
    cli = await asyncio.to_thread(rig.hostctl, "agents")
    assert cli.returncode == 3, cli.stderr
    [report] = json.loads(cli.stdout)
    assert report["reachable"] is True
    assert report["health"]["engine_up"] is False
    listed = await asyncio.to_thread(rig.hostctl, "sessions")
    assert listed.returncode == 3
    assert [s["state"] for s in json.loads(listed.stdout)["sessions"]] == ["unknown"]
    await rig.status.wait_health(AGENT_ID, lambda h: h.HasField("host") and not h.host.engine_up,
                                 timeout=DETECT)
    print(f"engine down seen by Ping {detected:.1f} s after SIGTERM to dockerd")

    await asyncio.to_thread(rig.engine.start)
    await assert_eventually(lambda: _engine_up(rig), timeout=DETECT)
    back = await assert_eventually(lambda: _known(rig, session.id), timeout=DETECT)
    assert back.status is SessionStatus.STOPPED   # the engine's shutdown stopped it: the real state
    again = await rig.calls.restart(session.id)
    assert again.status is SessionStatus.RUNNING


async def test_three_sessions_killed_from_outside_raise_one_alarm_and_operator_kills_none(rig: Rig) -> None:
    """docker kill x3: one sessions.mass_death naming all three with exit codes; operator kill x3: none."""
    ids = [(await rig.calls.create(f"victim-{i}", 0, "tcp", "", start=True)).id for i in range(3)]
    for sid in ids:
        await asyncio.to_thread(rig.engine.docker, "kill", container_name(sid))
    await rig.status.wait_health(AGENT_ID, lambda h: len(_alarms(h)) == 1, timeout=DETECT)
    [alarm] = _alarms(rig.status.health(AGENT_ID))
    assert sorted(alarm.attributes["sessions"].split(",")) == sorted(ids)
    assert alarm.attributes["exit_codes"] == "137,137,137"
    health = rig.status.health(AGENT_ID)
    assert health.notices[0].startswith("3 sessions stopped unasked within 60 s:")

    for sid in ids:
        await rig.calls.restart(sid)
    for sid in ids:
        await rig.calls.kill(sid)

    def stops_arrived(h: status_pb2.AgentHealth) -> bool:
        last = [h.last_session_events.get(sid) for sid in ids]
        return all(e is not None and e.type == "session.stopped" and e.seq > alarm.seq for e in last)

    health = await rig.status.wait_health(AGENT_ID, stops_arrived, timeout=DETECT)
    last_stop = max(health.last_session_events[sid].seq for sid in ids)

    def heartbeat_after_the_kills(h: status_pb2.AgentHealth) -> bool:
        return any(e.type == "agent.heartbeat" and e.seq > last_stop for e in h.recent_events)

    # Events arrive in order and an alarm goes out with the stop that triggers it: once a later
    # heartbeat is in, any alarm of these kills would be too.
    health = await rig.status.wait_health(AGENT_ID, heartbeat_after_the_kills, timeout=DETECT)
    # The first alarm may have left the 20 recent events by now (activity events come too).
    assert [e.seq for e in _alarms(health)] in ([], [alarm.seq])


def _alarms(h: status_pb2.AgentHealth) -> list[status_pb2.Event]:
    return [e for e in h.recent_events if e.type == "sessions.mass_death"]


async def _engine_down(rig: Rig) -> object:
    info = await rig.calls.ping()
    return info.health if info.health is not None and not info.health.engine_up else None


async def _engine_up(rig: Rig) -> bool:
    info = await rig.calls.ping()
    return info.health is not None and info.health.engine_up


async def _known(rig: Rig, session_id: str) -> object:
    s = await rig.calls.get(session_id)
    return None if s.state_unknown else s

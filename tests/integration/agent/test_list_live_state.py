"""List and Get against real Docker and real files: what they serve is what is there now.

The agent keeps parsed records in memory and shares one engine reading among Lists that
come at once; neither may serve a state older than the call: a container killed or
started behind the agent's back, a record edited, replaced or corrupted on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from convocate.v1 import sessions_pb2

from agent.record_cache import SETTLED_NS
from agent.records import RECORD
from agent.sessions import AGENT_LABEL, SESSION_LABEL
from tests.integration.agent.conftest import TIMEOUT, Client
from tests.support.agent_proc import AgentProcess
from tests.support.waiting import assert_eventually, wait_for_sync

pytestmark = [pytest.mark.docker]


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=True).stdout


async def _list(client: Client) -> dict[str, sessions_pb2.Session]:
    reply = await client.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=TIMEOUT)
    return {s.id: s for s in reply.sessions}


def _settled(path: Path) -> bool:
    """The file and its directory last changed longer ago than the record cache's window."""
    newest = max(path.stat().st_ctime_ns, path.parent.stat().st_ctime_ns)
    return time.time_ns() - newest > SETTLED_NS


def _record(agent: AgentProcess, session_id: str) -> Path:
    return agent.sessions_root / session_id / RECORD


def _kill_until_gone(name: str) -> None:
    """``docker kill``, then wait until the engine no longer lists it running (it removes itself)."""
    _docker("kill", name)
    wait_for_sync(lambda: not _docker("ps", "-q", "--filter", f"name=^{name}$"), timeout=30)


async def test_container_killed_and_started_behind_the_agent(client: Client, agent: AgentProcess,
                                                             offline_image: str) -> None:
    """Once Docker says a container stopped (or runs), the very next List and Get say so too."""
    s = await client.create("behind", start=True)
    name = f"convocate-session-{s.id}"
    try:
        assert (await _list(client))[s.id].running
        _kill_until_gone(name)
        assert not (await _list(client))[s.id].running
        assert not (await client.get(s.id)).running
        # Started by someone else (the session's name and labels): the next List sees it run.
        _docker("run", "-d", "--rm", "--name", name, "--label", f"{AGENT_LABEL}={agent.agent_id}",
                "--label", f"{SESSION_LABEL}={s.id}", "--entrypoint", "sleep", offline_image, "300")
        listed = (await _list(client))[s.id]
        assert listed.running
        assert listed.image == offline_image
        assert (await client.get(s.id)).running
        _kill_until_gone(name)
        got = await client.get(s.id)   # Get first this time: it reads the engine on its own
        assert not got.running
        assert not got.image
        assert not (await _list(client))[s.id].running
    finally:
        await client.delete(s.id)


async def test_concurrent_lists_share_a_reading_taken_after_they_began(client: Client) -> None:
    """Lists at once all get every session and the running state of after their call."""
    running = await client.create("together-up", start=True)
    stopped = await client.create("together-down")
    try:
        replies = await asyncio.gather(*(_list(client) for _ in range(12)))
        ids = set(replies[0])
        assert {running.id, stopped.id} <= ids
        for reply in replies:
            assert set(reply) == ids
            assert reply[running.id].running
            assert not reply[stopped.id].running
        _kill_until_gone(f"convocate-session-{running.id}")
        lists, got = await asyncio.gather(asyncio.gather(*(_list(client) for _ in range(12))),
                                          client.get(running.id))
        assert not got.running
        for reply in lists:
            assert not reply[running.id].running
    finally:
        await client.delete(running.id)
        await client.delete(stopped.id)


async def test_record_edited_replaced_or_corrupted_on_disk(client: Client, agent: AgentProcess) -> None:
    """A kept record edited in place (same size), replaced, corrupted or restored: List and Get
    serve what the file holds now."""
    s = await client.create("disk1")
    path = _record(agent, s.id)
    try:
        await assert_eventually(lambda: _settled(path), timeout=SETTLED_NS / 1e9 + 10, interval=0.2)
        assert (await _list(client))[s.id].name == "disk1"   # read and kept now that it has settled
        text = path.read_text()
        fd = os.open(path, os.O_WRONLY)   # in place, the same size, as an editor could
        try:
            os.write(fd, text.replace('"disk1"', '"disk2"').encode())
        finally:
            os.close(fd)
        assert (await _list(client))[s.id].name == "disk2"
        assert (await client.get(s.id)).name == "disk2"

        fresh = path.with_name("replacement")
        fresh.write_text(json.dumps({**json.loads(text), "name": "replaced", "port": 4711}))
        os.replace(fresh, path)
        listed = (await _list(client))[s.id]
        assert (listed.name, listed.port) == ("replaced", 4711)

        path.write_text('{"uuid": "not this one"')
        assert s.id not in await _list(client)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.get(s.id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert path.with_name(f"{RECORD}.rejected").exists()

        path.write_text(text)   # a good record again: served again
        assert (await _list(client))[s.id].name == "disk1"
    finally:
        await client.delete(s.id)

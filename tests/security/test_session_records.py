"""Security review findings 2 and 3 (agent side): session records a container or a tamperer
replaced can neither hang the agent nor be served."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import pytest
from convocate.v1 import sessions_pb2

from agent.records import record_to_json
from agent.sessions import SessionRecord, new_session_id
from tests.integration.agent.conftest import TIMEOUT, Client
from tests.security.conftest import in_container
from tests.support.agent_proc import AgentProcess
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]

BOUND = 10.0  # every call after an attack must answer within this many seconds


async def _list(client: Client) -> dict[str, sessions_pb2.Session]:
    listed = await asyncio.wait_for(
        client.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=TIMEOUT), BOUND)
    return {s.id: s for s in listed.sessions}


async def _still_serves(client: Client, victim: str) -> None:
    """List, create and update all answer within the bound."""
    assert victim in await _list(client)
    other = await asyncio.wait_for(client.create("after-attack"), BOUND)
    await asyncio.wait_for(client.sessions.UpdateSession(sessions_pb2.UpdateSessionRequest(
        id=victim, name="renamed", port=0, protocol="tcp", dns_name=""), timeout=TIMEOUT), BOUND)
    assert (await _list(client))[victim].name == "renamed"
    await client.delete(other.id)


async def test_finding2_a_container_replacing_session_json_with_a_fifo_or_dev_zero_hangs_nothing(
    client: Client, agent: AgentProcess,
) -> None:
    """Finding 2: from inside its running container a session replaces what used to be its
    record with a FIFO, then with a link to /dev/zero; the agent keeps listing, creating and
    updating, because the record lives outside anything the container can reach."""
    s = await client.create("fifo-attack", start=True)
    try:
        plant_fifo = "cd ~ && rm -f session.json && mkfifo session.json && ls -l session.json"
        code, out = in_container(s.id, plant_fifo)
        assert code == 0, out
        assert out.startswith("p")
        await _still_serves(client, s.id)
        code, out = in_container(s.id, "cd ~ && rm -f session.json && ln -s /dev/zero session.json")
        assert code == 0, out
        await _still_serves(client, s.id)
        # The real record is nowhere in the container's file system.
        code, out = in_container(
            s.id, "find / -path /proc -prune -o -path /sys -prune -o -name session.json -print 2>/dev/null")
        assert out.split() == ["/home/claude/session.json"]
        assert (agent.sessions_root / s.id / "session.json").is_file()
    finally:
        await client.delete(s.id)


async def test_finding2_records_replaced_on_disk_are_refused_and_the_agent_still_starts(
    client: Client, agent: AgentProcess,
) -> None:
    """Finding 2: records replaced on the host by a FIFO, a link to /dev/zero, a 100 MB file and
    a directory are each refused with a logged error; the other sessions still list, writes
    still work, and a restarted agent comes up."""
    victims = {kind: await client.create(f"victim-{kind}") for kind in ("fifo", "zero", "huge", "dir")}
    keeper = await client.create("keeper")
    for kind, s in victims.items():
        record = agent.sessions_root / s.id / "session.json"
        record.unlink()
        if kind == "fifo":
            os.mkfifo(record)
        elif kind == "zero":
            record.symlink_to("/dev/zero")
        elif kind == "huge":
            with record.open("wb") as f:
                f.truncate(100 * 1024 * 1024)
        else:
            record.mkdir()
    listed = await _list(client)
    assert keeper.id in listed
    assert not set(listed) & {s.id for s in victims.values()}
    await _still_serves(client, keeper.id)
    log = agent.log_text()
    for s in victims.values():
        assert f'"session": "{s.id}"' in log or f'"session":"{s.id}"' in log
    assert log.count("session record refused") >= len(victims)
    await agent.astop()
    await asyncio.wait_for(agent.astart(), 30)
    await client.tunnel.wait_up(15)
    assert keeper.id in await _list(client)
    await client.delete(keeper.id)


def _rewrite(agent: AgentProcess, session_id: str, fields: dict[str, object]) -> None:
    path = agent.sessions_root / session_id / "session.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


async def test_finding3_rewritten_records_are_revalidated_and_never_served(
    client: Client, agent: AgentProcess,
) -> None:
    """Finding 3 (agent side): a record rewritten with a DNS name holding a newline and a hosts
    line, an escape sequence in the name, or a bad port or protocol is refused, logged and set
    aside; one claiming another session's port is not served, so ports stay unique."""
    owner = await client.create("port-owner", port=-1)
    bad: dict[str, tuple[dict[str, object], str]] = {
        "dns": ({"dns_name": "x\n10.6.6.6\tshell.corp.example"}, "DNS name"),
        "name": ({"name": "evil\x1b]0;pwned\x07"}, "session name"),
        "port": ({"port": 70000}, "invalid port"),
        "proto": ({"protocol": "sctp"}, "protocol"),
    }
    made = {key: await client.create(f"bad-{key}") for key in bad}
    copycat = await client.create("copycat", port=-1)
    for key, (fields, _) in bad.items():
        _rewrite(agent, made[key].id, fields)
    _rewrite(agent, copycat.id, {"port": owner.port, "protocol": "tcp"})
    listed = await _list(client)
    assert owner.id in listed
    assert not set(listed) & {s.id for s in (*made.values(), copycat)}
    ports = [(s.port, s.protocol) for s in listed.values() if s.port]
    assert len(ports) == len(set(ports))
    log = agent.log_text()
    for key, (_, reason) in bad.items():
        assert (agent.sessions_root / made[key].id / "session.json.rejected").is_file()
        assert reason in log
    assert "\x1b]0;pwned" not in log
    assert f"belongs to session {owner.id}" in log
    for s in (owner, copycat):
        await client.delete(s.id)


async def test_finding2_old_layout_sessions_move_out_of_the_home_at_agent_start(
    client: Client, agent: AgentProcess,
) -> None:
    """Finding 2 (migration): a session of the old layout (record inside the mounted home) is
    moved at the next agent start without losing a file; its container then cannot see it."""
    sid = new_session_id()
    old = agent.sessions_root / sid
    (old / ".claude").mkdir(parents=True)
    (old / "notes.txt").write_text("kept across the move")
    now = datetime.now(UTC)
    (old / "session.json").write_text(record_to_json(SessionRecord(sid, "legacy", now, now)))
    for path in (old, old / ".claude", old / "notes.txt", old / "session.json"):
        os.chown(path, 1337, 1337)
    await agent.astop()
    await asyncio.wait_for(agent.astart(), 30)
    await client.tunnel.wait_up(15)
    assert sorted(os.listdir(old)) == ["home", "session.json"]
    assert (old / "home" / "notes.txt").read_text() == "kept across the move"
    assert (await _list(client))[sid].name == "legacy"
    await client.restart(sid)
    try:
        await assert_eventually(lambda: in_container(sid, "true")[0] == 0, timeout=BOUND)
        code, out = in_container(sid, "cat ~/notes.txt; ls -a ~")
        assert code == 0, out
        assert "kept across the move" in out
        assert "session.json" not in out
    finally:
        await client.delete(sid)

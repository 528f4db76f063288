"""Every Sessions operation and its errors, through the tunnel, against real Docker."""

from __future__ import annotations

import asyncio
import json
import subprocess

import grpc
import pytest
from convocate.v1 import attach_pb2, sessions_pb2

from tests.integration.agent.conftest import CGROUP_PARENT, TIMEOUT, Client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]


def _inspect(session_id: str) -> dict[str, object]:
    out = subprocess.run(["docker", "inspect", f"convocate-session-{session_id}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    data: dict[str, object] = json.loads(out)[0]
    return data


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")


async def test_ping_reports_the_agent(client: Client, agent: AgentProcess, offline_image: str) -> None:
    """Ping answers with the agent id, version, hostname and the current image."""
    resp = await client.sessions.Ping(sessions_pb2.PingRequest(client_id="test"), timeout=TIMEOUT)
    assert resp.agent_id == agent.agent_id
    assert resp.version
    assert resp.current_image == offline_image
    assert resp.server_time.seconds > 0
    assert resp.status_link.known  # the status emitter is wired in (its target is down)
    assert not resp.status_link.up


async def test_create_get_update_clone_list_delete(client: Client, agent: AgentProcess) -> None:
    """The record operations keep session.json, list order and fields as specified."""
    a = await client.create("alpha", port=-1, protocol="UDP", dns_name=" Alpha.Convocate.Internal ")
    assert a.port >= 1001
    assert a.protocol == "udp"
    assert a.dns_name == "alpha.convocate.internal"
    assert not a.running
    assert (agent.sessions_root / a.id / "session.json").is_file()
    assert (agent.sessions_root / a.id / "home" / ".claude" / "settings.json").is_symlink()
    got = await client.get(a.id)
    assert got.name == "alpha"
    updated = await client.sessions.UpdateSession(sessions_pb2.UpdateSessionRequest(
        id=a.id, name="alpha two", port=a.port, protocol="udp", dns_name=""), timeout=TIMEOUT)
    assert updated.name == "alpha two"
    assert updated.dns_name == ""
    assert updated.port == a.port
    (agent.sessions_root / a.id / "home" / "notes.txt").write_text("kept")
    b = await client.sessions.CloneSession(sessions_pb2.CloneSessionRequest(source_id=a.id, name="beta"),
                                           timeout=TIMEOUT)
    assert b.id != a.id
    assert b.port == 0
    assert (agent.sessions_root / b.id / "home" / "notes.txt").read_text() == "kept"
    listed = await client.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=TIMEOUT)
    ids = [s.id for s in listed.sessions]
    assert ids.index(b.id) < ids.index(a.id)  # newest last_accessed first
    assert listed.agent_id == agent.agent_id
    for sid in (a.id, b.id):
        await client.delete(sid)
        assert not (agent.sessions_root / sid).exists()


async def test_errors_have_codes_and_v2_messages(client: Client) -> None:
    """Unknown ids, invalid names, port and DNS clashes and bad protocols are refused clearly."""
    s = client.sessions
    unknown = "00000000-0000-4000-8000-000000000000"
    for call in (s.GetSession(sessions_pb2.GetSessionRequest(id=unknown), timeout=TIMEOUT),
                 s.KillSession(sessions_pb2.KillSessionRequest(id=unknown), timeout=TIMEOUT),
                 s.RestartSession(sessions_pb2.RestartSessionRequest(id=unknown), timeout=TIMEOUT),
                 s.DeleteSession(sessions_pb2.DeleteSessionRequest(id=unknown), timeout=TIMEOUT)):
        code, details = await _code(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == f'session "{unknown}" does not exist'
    code, details = await _code(client.create("bad/name"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("session name contains invalid character: '/' "
                       "(only letters, digits, spaces, _, -, . allowed)")
    code, details = await _code(client.create("  "))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "session name cannot be empty")
    code, details = await _code(client.create("p", protocol="sctp"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == 'protocol must be "tcp" or "udp", got "sctp"'
    first = await client.create("ports", port=4711, dns_name="clash")
    code, details = await _code(client.create("ports2", port=4711))
    assert (code, details) == (grpc.StatusCode.ALREADY_EXISTS,
                               "port 4711/tcp is already assigned to another session")
    other = await client.create("udp-ok", port=4711, protocol="udp")  # same number, other protocol
    code, details = await _code(client.create("dns2", dns_name="CLASH"))
    assert (code, details) == (grpc.StatusCode.ALREADY_EXISTS,
                               'DNS name "clash.convocate.internal" is already assigned to another session')
    code, _ = await _code(s.UpdateSession(sessions_pb2.UpdateSessionRequest(
        id=other.id, name="x", port=4711, protocol="tcp"), timeout=TIMEOUT))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    for sid in (first.id, other.id):
        await s.DeleteSession(sessions_pb2.DeleteSessionRequest(id=sid), timeout=TIMEOUT)


async def test_restart_runs_the_container_as_specified(client: Client, agent: AgentProcess,
                                                       offline_image: str) -> None:
    """Restart starts the named, labelled container; a second restart is refused; kill stops it."""
    s = await client.create("runner", port=-1)
    started = await client.restart(s.id)
    assert started.running
    assert started.image == offline_image
    data = _inspect(s.id)
    config, host = data["Config"], data["HostConfig"]
    assert isinstance(config, dict)
    assert isinstance(host, dict)
    assert config["Labels"]["convocate.session"] == s.id
    assert config["Labels"]["convocate.agent"] == agent.agent_id
    assert config["Hostname"] == f"convocate-{s.id[:8]}"
    assert host["CgroupParent"] == CGROUP_PARENT
    assert f"{agent.sessions_root / s.id / 'home'}:/home/claude" in host["Binds"]
    assert not any("docker.sock" in b for b in host["Binds"])  # opt-in only
    assert host["PortBindings"] == {f"{s.port}/tcp": [{"HostIp": "", "HostPort": str(s.port)}]}
    code, details = await _code(client.restart(s.id))
    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION, 'session "runner" already running')
    await client.kill(s.id)
    assert not (await client.get(s.id)).running
    code, _ = await _code(client.kill(s.id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    again = await client.restart(s.id)
    assert again.running
    await client.delete(s.id)


async def test_delete_while_running_stops_the_container_first(client: Client, agent: AgentProcess) -> None:
    """Deleting a running session stops its container and removes its directory."""
    s = await client.create("doomed", start=True)
    assert s.running
    await client.delete(s.id)
    assert not (agent.sessions_root / s.id).exists()
    name = f"convocate-session-{s.id}"
    gone = subprocess.run(["docker", "inspect", name], capture_output=True, check=False)
    assert gone.returncode != 0 or '"Running": false' in gone.stdout.decode()


async def test_background_detaches_every_viewer(client: Client) -> None:
    """Background ends each attached stream with BACKGROUNDED; the session keeps running."""
    s = await client.create("bg", start=True)
    view = AttachStream(client.attach, s.id)
    try:
        await view.wait_started()
        resp = await client.sessions.BackgroundSession(sessions_pb2.BackgroundSessionRequest(id=s.id),
                                                       timeout=TIMEOUT)
        assert resp.detached_viewers == 1
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_BACKGROUNDED
        assert (await client.get(s.id)).running
    finally:
        await view.close()


async def test_watch_streams_snapshot_then_changes(client: Client) -> None:
    """WatchSessions sends EXISTING..., SYNCED, then created, started, stopped and deleted events."""
    existing = await client.create("watched-before")
    call = client.sessions.WatchSessions(sessions_pb2.WatchSessionsRequest())
    events: list[sessions_pb2.SessionEvent] = []

    async def collect() -> None:
        async for ev in call:  # appended one by one: the test reads the list while it grows
            events.append(ev)  # noqa: PERF401

    task = asyncio.create_task(collect())
    try:
        await assert_eventually(lambda: any(e.kind == sessions_pb2.SESSION_EVENT_KIND_SYNCED for e in events))
        snapshot = [e.session_id for e in events if e.kind == sessions_pb2.SESSION_EVENT_KIND_EXISTING]
        assert existing.id in snapshot
        s = await client.create("watched", start=True)
        await client.kill(s.id)
        await client.delete(s.id)
        wanted = [sessions_pb2.SESSION_EVENT_KIND_CREATED, sessions_pb2.SESSION_EVENT_KIND_STARTED,
                  sessions_pb2.SESSION_EVENT_KIND_STOPPED, sessions_pb2.SESSION_EVENT_KIND_DELETED]
        activity = sessions_pb2.SESSION_EVENT_KIND_ACTIVITY  # interleaved (see test_activity.py)
        await assert_eventually(
            lambda: [e.kind for e in events if e.session_id == s.id and e.kind != activity] == wanted)
        started = next(e for e in events if e.kind == sessions_pb2.SESSION_EVENT_KIND_STARTED)
        assert started.session.running
    finally:
        call.cancel()
        task.cancel()
        await client.delete(existing.id)


async def test_container_exiting_on_its_own_is_reported_stopped(client: Client) -> None:
    """A container stopped behind the agent's back is seen through Docker events at once."""
    s = await client.create("external", start=True)
    call = client.sessions.WatchSessions(sessions_pb2.WatchSessionsRequest())
    kinds: list[int] = []

    async def collect() -> None:
        async for ev in call:  # appended one by one: the test reads the list while it grows
            if ev.session_id == s.id:
                kinds.append(ev.kind)  # noqa: PERF401

    task = asyncio.create_task(collect())
    try:
        await assert_eventually(lambda: sessions_pb2.SESSION_EVENT_KIND_EXISTING in kinds)
        subprocess.run(["docker", "stop", "-t", "1", f"convocate-session-{s.id}"], capture_output=True,
                       timeout=30, check=True)
        await assert_eventually(lambda: sessions_pb2.SESSION_EVENT_KIND_STOPPED in kinds, timeout=5)
        assert not (await client.get(s.id)).running
    finally:
        call.cancel()
        task.cancel()

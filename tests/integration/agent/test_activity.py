"""Session activity from the CLI's hooks, end to end: real Docker, a real agent and status service.

The stand-in CLI of the offline image fires the hooks the agent configures, with the JSON
the real CLI sends; the tests type its commands (``:prompt``, ``:permit``, ``:done``) with
the Reply RPC, so the same calls also prove that a reply reaches the session's shell.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli_settings import HOOK_COMMAND, HOOK_SPOOL, SETTINGS_FILE
from common.client.calls import AgentCalls
from common.domain import ActivityState, NeedsInputReason, Session, SessionEvent, SessionEventKind
from common.errors import InvalidArgumentError
from common.registry import register_agent
from common.ssh_keys import read_private_key
from common.tunnel import Tunnel
from tests.integration.agent.conftest import open_client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream
from tests.support.status_stack import StatusStack, agent_status_keys, start_status_stack
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]
HOST = "127.0.0.6"
OPERATOR = {"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]}}


@dataclass
class Stack:
    """A status service, an agent reporting to it, and a domain client through a tunnel."""

    status: StatusStack
    agent: AgentProcess
    tunnel: Tunnel
    calls: AgentCalls


def _docker_exec(session_id: str, script: str, user: str = "claude") -> subprocess.CompletedProcess[str]:
    argv = ["docker", "exec", "-u", user, f"convocate-session-{session_id}", "sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory (socket paths stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvact-") as d:
        yield Path(d)


@pytest.fixture
async def stack(short_tmp: Path, offline_image: str) -> AsyncIterator[Stack]:
    """The status service, the agent (real Docker) and a client, all torn down after the test."""
    status = await start_status_stack(short_tmp / "shell", heartbeat_interval=0.5)
    root = short_tmp / "agent"
    agent_id = f"agent-act-{uuid.uuid4().hex[:8]}"   # unique: other runs share this Docker Engine
    key, known = agent_status_keys(status.config, root, agent_id)
    config = {"status_host": status.config.host, "status_port": status.config.port,
              "status_client_key": key, "status_known_hosts": known, "heartbeat_interval": 0.5}
    agent = AgentProcess(root, host=HOST, image=offline_image, name="act", agent_id=agent_id, config=config)
    (agent.sessions_root / ".claude").mkdir()
    (agent.sessions_root / ".claude" / SETTINGS_FILE).write_text(json.dumps(OPERATOR))
    try:
        await agent.astart()
        client = await open_client(agent, "act-cli")
        calls = AgentCalls(agent.agent_id, lambda: client.tunnel.channel, client_id="console:op@shell")
        try:
            yield Stack(status, agent, client.tunnel, calls)
        finally:
            await client.tunnel.close()
    finally:
        await asyncio.to_thread(agent.close)
        await status.server.stop(grace=0)


async def _activity(calls: AgentCalls, session_id: str, state: ActivityState) -> Session:
    async def check() -> Session:
        s = next(s for s in await calls.list_sessions() if s.id == session_id)
        assert s.activity.state is state, f"activity is {s.activity}, not {state}"
        return s

    found: Session = await assert_eventually(check, timeout=20)
    return found


async def test_activity_follows_the_hooks_through_list_watch_status_and_restarts(stack: Stack) -> None:
    """working -> needs input (permission) -> idle shows in List, WatchSessions and the status events;
    an agent restart keeps the state, and a hook firing while the agent is down returns at once
    and is applied when the agent is back."""
    calls = stack.calls
    watched: list[SessionEvent] = []

    async def watch() -> None:
        async for event in calls.watch_sessions():
            if event.kind is SessionEventKind.ACTIVITY:
                watched.append(event)  # noqa: PERF401 - seen by the test while the stream runs

    watcher = asyncio.create_task(watch())
    try:
        s = await calls.create("busy", 0, "tcp", "", start=True)
        idle = await _activity(calls, s.id, ActivityState.IDLE)    # SessionStart: at its prompt
        await calls.reply(s.id, ":prompt build the thing")
        working = await _activity(calls, s.id, ActivityState.WORKING)
        assert working.activity.since is not None
        assert idle.activity.since is not None
        assert working.activity.since >= idle.activity.since
        await calls.reply(s.id, ":permit Bash")
        waiting = await _activity(calls, s.id, ActivityState.NEEDS_INPUT)
        assert waiting.activity.reason is NeedsInputReason.PERMISSION
        assert "Bash" in waiting.activity.message
        await calls.reply(s.id, ":done")
        done = await _activity(calls, s.id, ActivityState.IDLE)
        assert (await calls.get(s.id)).activity == done.activity

        await assert_eventually(lambda: [e.session.activity.state for e in watched if e.session] == [
            ActivityState.IDLE, ActivityState.WORKING, ActivityState.NEEDS_INPUT, ActivityState.IDLE])
        h = await stack.status.wait_health(
            stack.agent.agent_id, lambda h: sum(e.type == "session.activity" for e in h.recent_events) >= 4)
        states = [e.attributes["state"] for e in h.recent_events if e.type == "session.activity"]
        assert states[-4:] == ["idle", "working", "needs_input", "idle"]
        last = h.last_session_events[s.id]
        assert last.type == "session.activity"
        assert last.session.activity.state == 4  # ACTIVITY_STATE_IDLE on the wire

        log = await calls.session_log(s.id)
        kinds = [e.kind for e in log]
        assert kinds[:2] == ["created", "started"]
        replies = [e for e in log if e.kind == "reply"]
        assert [e.detail for e in replies] == [
            "reply sent: :prompt build the thing", "reply sent: :permit Bash", "reply sent: :done"]
        assert {e.actor for e in replies} == {"console:op@shell"}
        assert [e.attributes["state"] for e in log if e.kind == "activity"] == [
            "idle", "working", "needs_input", "idle"]
    finally:
        watcher.cancel()

    # The agent restarts: the state and when it began survive.
    await stack.agent.astop()
    await stack.agent.astart()
    await stack.tunnel.wait_up(15)
    again = await _activity(calls, s.id, ActivityState.IDLE)
    assert again.activity == done.activity

    # The agent is down: the hook still returns at once, and its event is applied on return.
    await stack.agent.astop()
    timed = await asyncio.to_thread(
        _docker_exec, s.id, "a=$(cut -d' ' -f1 /proc/uptime); :prompt more; b=$(cut -d' ' -f1 /proc/uptime); "
                            "echo $a $b")
    assert timed.returncode == 0, timed.stderr
    start, end = (float(x) for x in timed.stdout.split())
    assert end - start < 1.0, f"the hook took {end - start:.2f} s with the agent down"
    await stack.agent.astart()
    await stack.tunnel.wait_up(15)
    back = await _activity(calls, s.id, ActivityState.WORKING)
    assert back.activity.since is not None
    assert done.activity.since is not None
    assert back.activity.since >= done.activity.since

    await calls.kill(s.id)
    stopped = await _activity(calls, s.id, ActivityState.STOPPED)
    assert stopped.activity.since is not None
    assert (await calls.session_log(s.id))[-1].kind in ("stopped", "activity")


async def test_settings_file_the_cli_reads_merges_the_operator_and_our_hooks(stack: Stack) -> None:
    """Inside the container, ~/.claude/settings.local.json holds the operator's keys and hooks and
    ours; settings.json is still the operator's shared, read-only file."""
    s = await stack.calls.create("settings", 0, "tcp", "", start=True)
    read = await asyncio.to_thread(_docker_exec, s.id, f"cat $HOME/.claude/{SETTINGS_FILE}")
    assert read.returncode == 0, read.stderr
    settings = json.loads(read.stdout)
    assert settings["model"] == "opus"
    stop_commands = [h["command"] for g in settings["hooks"]["Stop"] for h in g["hooks"]]
    assert stop_commands == ["true", HOOK_COMMAND]
    assert [h["command"] for g in settings["hooks"]["UserPromptSubmit"] for h in g["hooks"]] == [HOOK_COMMAND]
    shared = await asyncio.to_thread(_docker_exec, s.id, "readlink $HOME/.claude/settings.json; "
                                                         "echo x >> $HOME/.claude-shared/settings.local.json")
    assert shared.stdout.splitlines()[0] == "/home/claude/.claude-shared/settings.json"
    assert shared.returncode != 0  # read-only for the session
    spool = await asyncio.to_thread(_docker_exec, s.id, f"test -d {HOOK_SPOOL} && test -w {HOOK_SPOOL}")
    assert spool.returncode == 0


async def test_peek_reads_the_screen_without_resizing_and_reply_reaches_the_shell(stack: Stack) -> None:
    """Peek shows what the attached viewer sees and leaves its 100x30 alone; a reply runs in the shell
    and is logged with its sender; a reply with control characters is refused."""
    calls = stack.calls
    s = await calls.create("peeky", 0, "tcp", "", start=True)
    client = await open_client(stack.agent, "act-view")
    view = AttachStream(client.attach, s.id, rows=30, cols=100)
    try:
        await view.wait_started()
        await calls.reply(s.id, "echo PEEK-$((6*7)) > /tmp/reply-proof; cat /tmp/reply-proof")
        await view.wait_for("PEEK-42")
        screen = await assert_eventually(lambda: _peek_has(calls, s.id, "PEEK-42"), timeout=10)
        assert (screen.rows, screen.cols) == (30, 100)
        size = await asyncio.to_thread(_docker_exec, s.id,
                                       "tmux display -p -t claude '#{window_width}x#{window_height}'")
        assert size.stdout.strip() == "100x30"
        sizes_before = sum(f.WhichOneof("frame") == "size" for f in view.frames)
        await calls.peek(s.id, lines=500)
        assert sum(f.WhichOneof("frame") == "size" for f in view.frames) == sizes_before
        proof = await asyncio.to_thread(_docker_exec, s.id, "cat /tmp/reply-proof")
        assert proof.stdout.strip() == "PEEK-42"
        with pytest.raises(InvalidArgumentError, match="printable"):
            await calls.reply(s.id, "rm -rf /\x1b[A")
        log = await calls.session_log(s.id)
        assert any(e.kind == "attached" and e.attributes.get("mode") == "drive" for e in log)
        assert any(e.kind == "reply" and e.actor == "console:op@shell" for e in log)
    finally:
        await view.close()
        await client.tunnel.close()


async def _peek_has(calls: AgentCalls, session_id: str, text: str) -> object:
    screen = await calls.peek(session_id)
    return screen if text in screen.text else None


async def test_a_hook_flood_is_bounded_and_touches_no_other_session(stack: Stack) -> None:
    """Thousands of events (and junk) dropped into one session's spool leave the other session alone,
    change the flooder's state at most the rate limit allows, and the agent keeps answering."""
    calls = stack.calls
    quiet = await calls.create("quiet", 0, "tcp", "", start=True)
    loud = await calls.create("loud", 0, "tcp", "", start=True)
    before = await _activity(calls, quiet.id, ActivityState.IDLE)
    await _activity(calls, loud.id, ActivityState.IDLE)
    flood = (f"cd {HOOK_SPOOL}; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); "
             "if [ $((i % 2)) = 0 ]; then e=UserPromptSubmit; else e=Stop; fi; "
             "echo '{\"session_id\":\"x\",\"hook_event_name\":\"'$e'\"}' > f$i.json; "
             "done; head -c 100000 /dev/zero > big.json; echo '[[[[' > junk.json; ln -s /etc/passwd l.json")
    done = await asyncio.to_thread(_docker_exec, loud.id, flood)
    assert done.returncode == 0, done.stderr
    await assert_eventually(lambda: not _docker_exec(loud.id, f"ls {HOOK_SPOOL}").stdout.strip(), timeout=60)
    log = await calls.session_log(loud.id, limit=5000)
    changes = [e for e in log if e.kind == "activity"]
    assert len(changes) < 400, f"{len(changes)} activity changes from a flood"
    after = next(s for s in await calls.list_sessions() if s.id == quiet.id)
    assert after.activity == before.activity
    assert not [e for e in await calls.session_log(quiet.id) if e.kind == "activity"][1:]
    assert "hook events dropped" in stack.agent.log_text()


def _host_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostctl", *args], capture_output=True, text=True,
                          timeout=60, check=False)


async def test_convocate_host_sessions_json_and_log_json_parse(stack: Stack, short_tmp: Path) -> None:
    """`sessions --json` carries the activity; `sessions log ID --json` is one JSON document of the
    entries; `--follow --json` prints one JSON object per line as entries come."""
    registry = short_tmp / "registry"
    agent = stack.agent
    register_agent(registry, agent.agent_id, agent.host, agent.port, agent.keys.client_key,
                   read_private_key(agent.keys.host_key))
    s = await stack.calls.create("logged", 0, "tcp", "", start=True)
    await stack.calls.reply(s.id, ":permit Edit")
    await _activity(stack.calls, s.id, ActivityState.NEEDS_INPUT)

    listed = await asyncio.to_thread(_host_cli, "sessions", "--json", "--registry", str(registry))
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout)["sessions"] if r["id"] == s.id]
    assert row["activity"]["state"] == "needs_input"
    assert row["activity"]["reason"] == "permission"
    assert row["activity"]["since"].endswith("Z")

    reg = ("--registry", str(registry))
    logged = await asyncio.to_thread(_host_cli, "sessions", "log", s.id, "--json", *reg)
    assert logged.returncode == 0, logged.stderr
    doc = json.loads(logged.stdout)
    assert doc["agent_id"] == agent.agent_id
    kinds = [e["kind"] for e in doc["entries"]]
    assert kinds[:2] == ["created", "started"]
    assert "reply" in kinds
    assert doc["entries"][-1]["attributes"]["state"] == "needs_input"

    missing = await asyncio.to_thread(_host_cli, "sessions", "log", "no-such-session", *reg)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")

    follow = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostctl", "sessions", "log", s.id, "--follow", "--json", "--limit", "1",
        "--agent", agent.agent_id, "--registry", str(registry),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert follow.stdout is not None
        first = json.loads(await asyncio.wait_for(follow.stdout.readline(), 20))
        assert first["kind"] in ("activity", "reply"), first
        await stack.calls.reply(s.id, ":done")
        lines = [json.loads(await asyncio.wait_for(follow.stdout.readline(), 20)) for _ in range(2)]
        assert [e["kind"] for e in lines] == ["reply", "activity"], lines
        assert lines[1]["attributes"]["state"] == "idle"
    finally:
        follow.terminate()
        await asyncio.wait_for(follow.wait(), 20)

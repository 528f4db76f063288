"""Security review finding 4: a session container cannot plant device nodes or setuid files
that give anything, cannot fork without bound, and Clone never opens what it planted."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from convocate.v1 import sessions_pb2

from tests.integration.agent.conftest import TIMEOUT, Client
from tests.security.conftest import PIDS_LIMIT, in_container
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream
from tests.support.env import require_tool
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]

FORBIDDEN_CAPS = {"MKNOD", "SETFCAP", "SYS_ADMIN", "NET_RAW", "DAC_OVERRIDE", "FOWNER", "FSETID",
                  "SYS_CHROOT", "KILL", "NET_BIND_SERVICE", "SYS_PTRACE"}


def _host_config(session_id: str) -> dict[str, object]:
    out = subprocess.run(["docker", "inspect", f"convocate-session-{session_id}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    host = json.loads(out)[0]["HostConfig"]
    assert isinstance(host, dict)
    return host


def _euid_probe(directory: Path) -> Path:
    """A static program printing its effective uid (busybox drops setuid on its own)."""
    gcc = require_tool("gcc")
    source = directory / "probe.c"
    source.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                      'int main(void) { printf("euid=%d\\n", (int)geteuid()); return 0; }\n')
    subprocess.run([gcc, "-static", "-O", "-o", str(directory / "probe"), str(source)],
                   check=True, capture_output=True, timeout=60)
    return directory / "probe"


async def _started(client: Client, name: str) -> str:
    s = await client.create(name, start=True)
    await assert_eventually(lambda: in_container(s.id, "tmux has-session -t claude")[0] == 0, timeout=15)
    return s.id


async def test_finding4_container_drops_capabilities_and_sets_no_new_privileges(client: Client) -> None:
    """Finding 4: every capability but the entrypoint's few is dropped, no-new-privileges is
    set, the PID limit applies, and the session (its CLI and the attach user) is not root."""
    sid = await _started(client, "caps")
    try:
        host = _host_config(sid)
        assert host["CapDrop"] == ["ALL"]
        assert isinstance(host["CapAdd"], list)
        assert not FORBIDDEN_CAPS & {str(c).removeprefix("CAP_") for c in host["CapAdd"]}
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == PIDS_LIMIT
        code, out = in_container(sid, "id -u; grep -E 'CapEff|NoNewPrivs' /proc/self/status; ps")
        assert code == 0, out
        assert out.split()[0] == "1337"
        assert "CapEff:\t0000000000000000" in out
        assert "NoNewPrivs:\t1" in out
        assert " root " not in out  # no process runs as root, PID 1 included
    finally:
        await client.delete(sid)


async def test_finding4_no_device_node_and_no_setuid_effect_from_the_home(
    client: Client, agent: AgentProcess, tmp_path: Path,
) -> None:
    """Finding 4: mknod fails in the home, for the session user and even for root in the
    container; a setuid-root binary placed in the home gives no privilege; a setuid file the
    session makes is its own uid's, behind the agent's 0700 directory on the host."""
    probe = _euid_probe(tmp_path)
    sid = await _started(client, "planter")
    home = agent.sessions_root / sid / "home"
    try:
        for user, path in (("claude", "/home/claude/null"), ("0", "/tmp/null")):
            code, out = in_container(sid, f"mknod {path} c 1 3", user=user)
            assert code != 0
            assert "not permitted" in out
        assert not os.path.lexists(home / "null")
        # A setuid-root program, as if root had planted it in the home: no privilege inside.
        planted = home / "probe"
        shutil.copy(probe, planted)
        os.chown(planted, 0, 0)
        planted.chmod(0o4755)
        code, out = in_container(sid, "~/probe")
        assert (code, out.strip()) == (0, "euid=1337")
        # What the session itself can make: a setuid file of its own uid, not root's.
        code, out = in_container(sid, "cp /bin/busybox ~/mine && chmod 4755 ~/mine && chown 0:0 ~/mine")
        assert code != 0
        st = (home / "mine").stat()
        assert (st.st_uid, st.st_gid) == (1337, 1337)
        assert stat.S_IMODE((agent.sessions_root / sid).stat().st_mode) == 0o700
        # The FIFO a session can make is harmless: Clone below never opens one.
        code, out = in_container(sid, "mkfifo ~/pipe && ls -l ~/pipe")
        assert code == 0, out
    finally:
        await client.delete(sid)


async def test_finding4_process_count_is_bounded(client: Client) -> None:
    """Finding 4: a fork flood inside a session stops at the PID limit; the agent and the other
    sessions are unaffected (the flooding session's own shell may die of it)."""
    sid = await _started(client, "forker")
    try:
        flood = f"i=0; while [ $i -lt {PIDS_LIMIT * 2} ]; do sleep 3 & i=$((i+1)); done"
        code, out = in_container(sid, flood)
        assert "can't fork" in out or "Resource temporarily unavailable" in out, (code, out)
        neighbour = await _started(client, "neighbour")
        code, out = in_container(neighbour, "echo alive")
        assert (code, out.strip()) == (0, "alive")
        await client.delete(neighbour)
    finally:
        await client.delete(sid)


async def test_finding4_clone_copies_neither_a_fifo_nor_a_device_and_does_not_hang(
    client: Client, agent: AgentProcess,
) -> None:
    """Finding 4: Clone of a home holding a FIFO and a /dev/zero-style device node (made by root
    on the host) answers promptly and copies neither; regular files and inner links are copied."""
    src = await client.create("clone-src")
    home = agent.sessions_root / src.id / "home"
    os.mkfifo(home / "pipe")
    os.mknod(home / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    (home / "work.txt").write_text("work")
    (home / "escape").symlink_to("/etc/shadow")
    clone = await asyncio.wait_for(client.sessions.CloneSession(
        sessions_pb2.CloneSessionRequest(source_id=src.id, name="clone-dst"), timeout=TIMEOUT), 15)
    try:
        copied = agent.sessions_root / clone.id / "home"
        names = set(os.listdir(copied))
        assert "work.txt" in names
        assert {"pipe", "zero", "escape"}.isdisjoint(names)
        assert (copied / "work.txt").stat().st_uid == 1337
    finally:
        for sid in (src.id, clone.id):
            await client.delete(sid)


async def test_finding4_the_stand_in_cli_still_works_inside(client: Client) -> None:
    """Finding 4: confined, the session's CLI (the stand-in) still runs in tmux as the session
    user, and files in the home can be written and read."""
    s = await client.create("cli", start=True)
    view = AttachStream(client.attach, s.id, rows=30, cols=100)
    try:
        await view.wait_started()
        await view.wait_for("$")
        view.type("id -u; echo made-$((6*7)) > ~/f && cat ~/f\r")
        await view.wait_for("made-42")
        assert "1337" in view.text
    finally:
        await view.close()
        await client.delete(s.id)

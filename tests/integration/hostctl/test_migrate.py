"""migrate-session and drain between two real agents (real Docker), over a real sshd.

Both agents run on this machine (127.0.0.7 and 127.0.0.8, each with its own sessions
root); the moves go through the test sshd (two SSH connections, one per side). Faults
are injected from outside the code under test: a second key of the sshd runs a forced
command in front of every step (it cuts the incoming stream, fails a step, or kills the
target agent right after a step), the target's sessions root is a full tmpfs, and the
target's current image is one its engine does not have.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.agent_id import new_agent_id
from common.errors import ConvocateError, ResourceExhaustedError
from common.registry import AgentRecord, register_agent
from common.ssh_keys import generate_keypair, public_key_text, read_private_key
from hostctl.agent_link import agent_calls
from hostctl.migrate import Side, drain_agent, migrate_session
from hostctl.remote import SSHRunner, SSHTarget
from hostctl.report import Report
from tests.support.agent_proc import AgentProcess
from tests.support.sshd import Sshd

pytestmark = [pytest.mark.docker, pytest.mark.sshd, pytest.mark.timeout(600)]

# Runs instead of each command of the fault key; what it does is read from the mode file.
FAULT = r"""
import os, signal, subprocess, sys
command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
how, marker, arg = open(sys.argv[1]).read().split("\t")
arg = arg.strip()
if marker not in command or how == "pass":
    os.execvp("sh", ["sh", "-c", command])
if how == "fail":
    sys.stderr.write("injected failure\n")
    sys.exit(1)
if how == "cut":  # forward the first bytes of the stream, then drop the connection's channel
    receiver = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE)
    seen = 0
    while chunk := sys.stdin.buffer.read(65536):
        seen += len(chunk)
        receiver.stdin.write(chunk[:max(0, int(arg) - seen + len(chunk))])
        if seen > int(arg):
            break
    receiver.stdin.close()
    receiver.wait()
    os.kill(os.getppid(), signal.SIGKILL)  # the sshd session process: the connection dies
    sys.exit(1)
if how == "killafter":  # run the step, then kill the target agent
    rc = subprocess.call(["sh", "-c", command])
    os.kill(int(arg), signal.SIGKILL)
    sys.exit(rc)
"""


@dataclass
class Fault:
    """A login of the test sshd whose commands go through the fault script."""

    key: Path
    mode: Path

    def set(self, how: str, marker: str = "", arg: str = "") -> None:
        self.mode.write_text(f"{how}\t{marker}\t{arg}\n")


@pytest.fixture(scope="module")
def fault(sshd: Sshd) -> Fault:
    """Authorize a second key with the fault script as its forced command."""
    root = sshd.client_key.parent
    script = root / "fault.py"
    script.write_text(FAULT)
    mode = root / "fault-mode"
    key = root / "fault_ed25519_key"
    pub = generate_keypair(key, "fault")
    with (root / "authorized_keys").open("a") as f:
        f.write(f'command="{sys.executable} {script} {mode}" {public_key_text(pub)}\n')
    made = Fault(key, mode)
    made.set("pass")
    return made


@dataclass
class Pair:
    """Two agents, their registry records, and the sshd that reaches both hosts' files."""

    a: AgentProcess
    b: AgentProcess
    ra: AgentRecord
    rb: AgentRecord
    sshd: Sshd

    def side(self, agent: AgentProcess, key: Path | None = None) -> Side:
        s = self.sshd
        runner = SSHRunner(SSHTarget(s.host, s.port, s.user, key or s.client_key, s.known_hosts))
        return Side(runner, str(agent.sessions_root), self.ra if agent is self.a else self.rb)


@pytest.fixture
def pair(sshd: Sshd, offline_image: str) -> Iterator[Pair]:
    """Agents a (127.0.0.7) and b (127.0.0.8), both serving, registered in a registry here."""
    with tempfile.TemporaryDirectory(prefix="cvmg-") as d:
        root = Path(d)
        # Ids of this run only: closing an agent removes every container labelled with its id,
        # on the one Docker Engine that other runs of these tests may be using at the same time.
        run = new_agent_id()[:8]
        agents = [AgentProcess(root / n, host=h, image=offline_image, name=n, agent_id=f"mig-{n}-{run}")
                  for n, h in (("a", "127.0.0.7"), ("b", "127.0.0.8"))]
        records = [register_agent(root / "reg", x.agent_id, x.host, x.port, x.keys.client_key,
                                  read_private_key(x.keys.host_key)) for x in agents]
        try:
            for x in agents:
                x.start()
            yield Pair(agents[0], agents[1], records[0], records[1], sshd)
        finally:
            for x in agents:
                x.close()


def _files(agent: AgentProcess, sid: str) -> dict[str, str]:
    home = agent.sessions_root / sid / "home"
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


async def _session(pair: Pair, *, running: bool = True, big: int = 0) -> tuple[str, dict[str, str]]:
    """A session on agent a with files in its home (and its transcript); its id and files."""
    async with agent_calls(pair.ra) as calls:
        s = await calls.create("mover", 0, "", "", start=running)
    home = pair.a.sessions_root / s.id / "home"
    (home / "work").mkdir(exist_ok=True)
    (home / "work" / "notes.txt").write_text("keep me\n")
    transcript = home / ".claude" / "projects" / "p"
    transcript.mkdir(parents=True, exist_ok=True)
    (transcript / "session.jsonl").write_text('{"role": "user", "text": "hello"}\n')
    if big:
        (home / "work" / "big.bin").write_bytes(bytes(range(256)) * (big // 256))
    return s.id, _files(pair.a, s.id)


async def _close(*sides: Side) -> None:
    for s in sides:
        await s.runner.close()


def _leftovers(agent: AgentProcess) -> list[str]:
    return sorted(p.name for p in agent.sessions_root.iterdir() if p.name.startswith(".staging-"))


async def _whole_on_a(pair: Pair, sid: str, files: dict[str, str], running: bool) -> None:
    assert _files(pair.a, sid) == files
    assert not (pair.b.sessions_root / sid).exists()
    assert _leftovers(pair.b) == []
    async with agent_calls(pair.ra) as calls:
        assert (await calls.get(sid)).running is running


async def test_migrate_moves_a_running_session_with_its_files(pair: Pair) -> None:
    """Home and transcript arrive intact, it runs on b, a no longer has it; a re-run changes nothing."""
    sid, files = await _session(pair)
    src, tgt = pair.side(pair.a), pair.side(pair.b)
    try:
        plan = Report("migrate-session", sid, dry_run=True)
        await migrate_session(src, tgt, sid, plan)
        steps = ["check", "stop", "copy", "import", "register", "remove", "start"]
        assert [s.step for s in plan.steps] == steps
        assert (pair.a.sessions_root / sid).exists()

        report = Report("migrate-session", sid)
        await migrate_session(src, tgt, sid, report)
        again = Report("migrate-session", sid)
        await migrate_session(src, tgt, sid, again)
    finally:
        await _close(src, tgt)
    assert _files(pair.b, sid) == files
    assert not (pair.a.sessions_root / sid).exists()
    assert _leftovers(pair.b) == []
    async with agent_calls(pair.rb) as calls:
        assert (await calls.get(sid)).running
    async with agent_calls(pair.ra) as calls:
        assert sid not in {s.id for s in await calls.list_sessions()}
    assert not again.changed
    assert json.loads(json.dumps(report.as_dict()))["session"] == sid


@pytest.mark.parametrize("step", ["check", "copy", "import", "register"])
async def test_a_failure_at_each_step_leaves_the_session_whole_on_the_source(
    pair: Pair, fault: Fault, step: str,
) -> None:
    """Whatever step before the removal fails, the session is on a with its files (running again)
    and b has nothing."""
    sid, files = await _session(pair, big=2 << 20 if step == "check" else 0)
    key: Path | None = None
    mounted = False
    if step == "check":        # the target's sessions root is full
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(pair.b.sessions_root)],
                       check=True, timeout=30)
        mounted = True
    elif step == "copy":       # the connection dies 100 KiB into the stream
        fault.set("cut", "sha256sum", str(100 << 10))
        key = fault.key
    elif step == "import":     # the target's import command fails
        fault.set("fail", "mv -T", "")
        key = fault.key
    else:                      # the target agent dies right after the import
        assert pair.b.proc is not None
        fault.set("killafter", "mv -T", str(pair.b.proc.pid))
        key = fault.key
    src, tgt = pair.side(pair.a), pair.side(pair.b, key)
    try:
        with pytest.raises(ConvocateError, match=f"stays on {pair.ra.agent_id}|{sid}") as failed:
            await migrate_session(src, tgt, sid, Report("migrate-session", sid))
        if step == "check":
            assert isinstance(failed.value, ResourceExhaustedError)
    finally:
        await _close(src, tgt)
        fault.set("pass")
        if mounted:
            subprocess.run(["umount", str(pair.b.sessions_root)], check=True, timeout=30)
    assert "re-run" in str(failed.value)
    await _whole_on_a(pair, sid, files, running=True)


async def test_a_failed_start_leaves_the_session_whole_and_stopped_on_the_target(pair: Pair) -> None:
    """The target's engine has no such image: the session is on b, stopped, with its files; a has none."""
    sid, files = await _session(pair)
    (pair.b.config_dir / "current-image").write_text("convocate-test:no-such-image\n")
    src, tgt = pair.side(pair.a), pair.side(pair.b)
    try:
        with pytest.raises(ConvocateError, match="restart it from the console"):
            await migrate_session(src, tgt, sid, Report("migrate-session", sid), timeout=15)
    finally:
        await _close(src, tgt)
    assert _files(pair.b, sid) == files
    assert not (pair.a.sessions_root / sid).exists()
    async with agent_calls(pair.rb) as calls:
        assert not (await calls.get(sid)).running


async def test_a_rerun_after_a_failed_removal_removes_the_source_copy(pair: Pair) -> None:
    """Both agents hold identical copies (the source's Delete failed): the re-run removes a's."""
    sid, files = await _session(pair, running=False)
    subprocess.run(["cp", "-a", str(pair.a.sessions_root / sid), str(pair.b.sessions_root / sid)], check=True,
                   timeout=60)
    src, tgt = pair.side(pair.a), pair.side(pair.b)
    try:
        report = Report("migrate-session", sid)
        await migrate_session(src, tgt, sid, report)
    finally:
        await _close(src, tgt)
    assert [s.step for s in report.steps] == ["check", "remove"]
    assert not (pair.a.sessions_root / sid).exists()
    assert _files(pair.b, sid) == files


async def test_drain_moves_every_session(pair: Pair) -> None:
    """drain empties a, one session at a time, and reports each."""
    one, files_one = await _session(pair)
    two, files_two = await _session(pair, running=False)
    src, tgt = pair.side(pair.a), pair.side(pair.b)
    try:
        report = Report("drain", pair.ra.agent_id)
        failed = await drain_agent(src, tgt, report)
    finally:
        await _close(src, tgt)
    assert failed == [], report.as_dict()
    assert sorted(report.data["moved"]) == sorted([one, two])
    assert _files(pair.b, one) == files_one
    assert _files(pair.b, two) == files_two
    async with agent_calls(pair.rb) as calls:
        states = {s.id: s.running for s in await calls.list_sessions()}
    assert states == {one: True, two: False}


def test_cli_migrate_dry_run_json(pair: Pair) -> None:
    """`migrate-session --dry-run --json` parses and changes nothing; a bad id is one line, exit 1."""
    s = pair.sshd
    reg = pair.a.root.parent / "reg"
    base = [sys.executable, "-m", "hostctl", "migrate-session",
            "--from", pair.ra.agent_id, "--to", pair.rb.agent_id, "--registry", str(reg),
            "--from-host", s.host, "--to-host", s.host, "--ssh-port", str(s.port),
            "--user", s.user, "--key", str(s.client_key), "--known-hosts", str(s.known_hosts)]
    bad = subprocess.run([*base, "--session", "nope", "--json"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    sid, _ = asyncio.run(_session(pair, running=False))
    plan = subprocess.run([*base, "--session", sid, "--sessions-root", str(pair.a.sessions_root),
                           "--to-sessions-root", str(pair.b.sessions_root), "--dry-run", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert plan.returncode == 0, plan.stderr
    out = json.loads(plan.stdout)
    assert out["dry_run"] is True
    assert [s["step"] for s in out["steps"]][:3] == ["check", "stop", "copy"]
    assert not (pair.b.sessions_root / sid).exists()


async def test_a_pre_v2_orphan_on_the_shell_host_moves_to_an_agent(pair: Pair, tmp_path: Path) -> None:
    """An old-layout directory (record inside the home) arrives in the new layout, served by b."""
    sid, files = await _session(pair, running=False)
    orphan = tmp_path / "shell-base" / sid
    shutil.copytree(pair.a.sessions_root / sid / "home", orphan, symlinks=True)
    shutil.copy(pair.a.sessions_root / sid / "session.json", orphan / "session.json")
    async with agent_calls(pair.ra) as calls:
        await calls.delete(sid)
    s = pair.sshd
    shell = Side(SSHRunner(SSHTarget(s.host, s.port, s.user, s.client_key, s.known_hosts)),
                 str(orphan.parent), None)
    tgt = pair.side(pair.b)
    try:
        report = Report("migrate-session", sid)
        await migrate_session(shell, tgt, sid, report)
    finally:
        await _close(shell, tgt)
    assert not orphan.exists()
    assert (pair.b.sessions_root / sid / "session.json").is_file()
    assert _files(pair.b, sid) == files
    async with agent_calls(pair.rb) as calls:
        assert (await calls.get(sid)).name == "mover"

"""init-agent over a real sshd, then a real agent and status service using what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from convocate.v1 import status_pb2, status_pb2_grpc

from common.registry import load_registry
from hostctl.fleet import survey
from hostctl.peering import AgentHostLayout, ShellHostLayout, init_agent
from hostctl.remote import SSHRunner, SSHTarget
from shell.status.server import StatusConfig, StatusServer
from tests.support.env import require_docker
from tests.support.net import free_port
from tests.support.sshd import Sshd
from tests.support.waiting import assert_eventually

AGENT_HOST = "127.0.0.4"


@dataclass
class Peered:
    root: Path
    agent: AgentHostLayout
    shell: ShellHostLayout
    status: StatusServer
    agent_id: str


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A short private directory (socket paths stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvp-") as d:
        yield Path(d)


@pytest.fixture
async def peered(sshd: Sshd, short_root: Path) -> AsyncIterator[Peered]:
    """A status service running here, and an agent host peered with it through sshd."""
    root = short_root
    status_port = free_port("127.0.0.1")
    shell = ShellHostLayout(
        registry_dir=root / "shell" / "agents", status_host_key=root / "shell" / "status_key",
        status_authorized_keys=root / "shell" / "status_authorized", status_address="127.0.0.1",
        status_port=status_port, owner="",
    )
    agent = AgentHostLayout(root / "agent" / "etc", root / "agent" / "home", owner="",
                            listen_port=free_port(AGENT_HOST))
    runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
    try:
        plan, record = await init_agent(runner, AGENT_HOST, agent=agent, shell=shell)
    finally:
        await runner.close()
    assert record is not None
    status = StatusServer(StatusConfig(
        host="127.0.0.1", port=status_port, host_key=shell.status_host_key,
        authorized_keys=shell.status_authorized_keys, socket=root / "s" / "status.sock",
        heartbeat_interval=0.5,
    ))
    await status.start()
    try:
        yield Peered(root, agent, shell, status, plan.agent_id)
    finally:
        await status.stop(grace=0)


def _start_agent(p: Peered) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONVOCATE_AGENT_LISTEN_HOST": AGENT_HOST,
        "CONVOCATE_AGENT_RUNTIME_DIR": str(p.root / "r"),
        "CONVOCATE_AGENT_EXPECTED_UID": "-1",
        "CONVOCATE_AGENT_CGROUP_PARENT": "",
        "CONVOCATE_AGENT_DNS_SERVER": "",
        "CONVOCATE_AGENT_CLAUDE_CLI": str(p.root / "no-cli"),
        "CONVOCATE_AGENT_HEARTBEAT_INTERVAL": "0.5",
    }
    with (p.root / "agent.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--config", str(p.agent.config_dir / "agent.toml")],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    deadline = time.monotonic() + 30
    while b'"agent serving"' not in (p.root / "agent.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((p.root / "agent.log").read_text()[-3000:])
        time.sleep(0.05)
    return proc


async def test_init_agent_peers_both_directions(peered: Peered) -> None:
    """After init-agent, the shell reaches the agent and the agent's status stream reaches the shell."""
    require_docker()
    p = peered
    (record,) = load_registry(p.shell.registry_dir)
    assert record.agent_id == p.agent_id
    assert (p.agent.config_dir / "agent-id").read_text().strip() == p.agent_id
    proc = _start_agent(p)
    try:
        (report,) = await survey([record], timeout=10)
        assert report.reachable, report.error
        channel = grpc.aio.insecure_channel(f"unix:{p.status.config.socket}")
        try:
            stub = status_pb2_grpc.StatusStub(channel)

            async def connected() -> bool:
                view = await stub.GetView(status_pb2.GetViewRequest(), timeout=5)
                return any(a.agent_id == p.agent_id and a.connected for a in view.agents)

            await assert_eventually(connected, timeout=15)
        finally:
            await channel.close()
        reg = p.shell.registry_dir
        cli = subprocess.run([sys.executable, "-m", "hostctl", "agents", "--registry", str(reg), "--json"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)[0]["reachable"] is True
    finally:
        proc.terminate()
        proc.wait(20)
    down = subprocess.run([sys.executable, "-m", "hostctl", "agents", "--registry", str(reg), "--json",
                           "--timeout", "2"], capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 3
    assert json.loads(down.stdout)[0]["reachable"] is False


async def test_rerun_rotates_keys_and_keeps_one_line_each(peered: Peered, sshd: Sshd) -> None:
    """A second init-agent keeps the keys; with rotate it replaces them, one authorized line per direction."""
    p = peered
    first = load_registry(p.shell.registry_dir)[0].client_key.read_text()
    runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
    try:
        again, _ = await init_agent(runner, AGENT_HOST, agent=p.agent, shell=p.shell)
        assert not again.changed
        assert load_registry(p.shell.registry_dir)[0].client_key.read_text() == first
        plan, _ = await init_agent(runner, AGENT_HOST, agent=p.agent, shell=p.shell, rotate=True)
    finally:
        await runner.close()
    assert plan.changed
    assert plan.agent_id == p.agent_id  # read back from the agent host
    assert load_registry(p.shell.registry_dir)[0].client_key.read_text() != first
    auth = p.agent.authorized_keys.read_text().splitlines()
    assert len([ln for ln in auth if ln.endswith(f"convocate:shell-to-agent:{p.agent_id}")]) == 1
    status_auth = p.shell.status_authorized_keys.read_text().splitlines()
    assert len([ln for ln in status_auth if ln.endswith(f"convocate:agent-to-shell:{p.agent_id}")]) == 1
    assert oct((p.agent.config_dir / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"


async def test_dry_run_changes_nothing(sshd: Sshd, short_root: Path) -> None:
    """--dry-run returns the plan and writes no file on either side."""
    shell = ShellHostLayout(registry_dir=short_root / "reg", status_address="127.0.0.1",
                            status_host_key=short_root / "k", status_authorized_keys=short_root / "a",
                            owner="")
    agent = AgentHostLayout(short_root / "etc", short_root / "home", owner="")
    runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
    try:
        plan, record = await init_agent(runner, AGENT_HOST, agent_id="a1", agent=agent, shell=shell,
                                        dry_run=True)
    finally:
        await runner.close()
    assert record is None
    assert len(plan.steps) == 5
    assert list(short_root.iterdir()) == []

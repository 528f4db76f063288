"""`convocate-host agents --json` as a script runs it: its own process, a real agent on loopback.

The agent is the real server on the fake runtime (real asyncssh, pinned host key, key-only
auth). Issue 13 changed how the command loads its modules and how it exits; what it answers
and its exit status must stay the same. An agent whose connection is definitively failing
is given up before the deadline: those tests set a long ``--timeout`` and bound the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from common.registry import load_registry
from common.ssh_keys import generate_keypair, pin_host_key
from common.tasks import cancel_and_wait
from common.version import VERSION
from hostctl.fleet import survey
from tests.support.agent_proc import AgentProcess
from tests.support.fleet import prepare_agent
from tests.support.net import free_port
from tests.support.tcp_proxy import TcpProxy

AGENT_INDEX = 24   # agent-y on 127.0.0.26: clear of the other suites' addresses
LONG = "60"        # --timeout of the give-up tests: far beyond their own bound
BOUND = 20         # s: those tests fail (pytest-timeout) if the command waited for its deadline
FIELDS = {"agent_id", "address", "port", "reachable", "error", "version", "hostname", "current_image",
          "status_link_up", "health", "via"}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Path, AgentProcess]]:
    """A registry of one agent, registered and not yet started (stopped after the test)."""
    registry = tmp_path / "registry"
    agent = prepare_agent(tmp_path / "agents", registry, AGENT_INDEX, None)
    try:
        yield registry, agent
    finally:
        agent.stop()


def _agents(registry: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostctl", "agents", "--json", "--registry", str(registry),
                           *extra], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING"})


def test_a_reachable_agent_is_one_row_with_its_version_and_engine_and_exit_0(
        registry: tuple[Path, AgentProcess]) -> None:
    """Everything Ping said, as JSON on stdout, nothing on stderr, exit 0."""
    path, agent = registry
    agent.start()
    done = _agents(path)
    assert (done.returncode, done.stderr) == (0, "")
    [row] = json.loads(done.stdout)
    assert set(row) == FIELDS
    assert (row["agent_id"], row["address"], row["port"]) == (agent.name, agent.host, agent.port)
    assert (row["reachable"], row["error"], row["version"], row["via"]) == (True, "", VERSION, "direct")
    assert row["hostname"] == socket.gethostname()
    assert row["status_link_up"] is None    # this agent has no status service to report to
    assert row["health"]["engine_up"] is True
    assert row["health"]["engine_version"] == "0.0-fake"


@pytest.mark.timeout(BOUND)
def test_an_agent_that_is_down_is_a_row_saying_so_and_exit_3(registry: tuple[Path, AgentProcess]) -> None:
    """Not started: refused for the grace, the row says why, long before the deadline; exit 3 (partial)."""
    path, agent = registry
    done = _agents(path, "--timeout", LONG)
    assert done.returncode == 3, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["agent_id"], row["reachable"], row["health"]) == (agent.name, False, None)
    assert row["error"] == (f"{agent.name} ({agent.host}:{agent.port}) refused the "
                            "connection: start its agent there (`systemctl start convocate-agent`)")


@pytest.mark.timeout(BOUND)
def test_an_agent_whose_host_key_differs_from_the_pinned_one_is_refused(
        registry: tuple[Path, AgentProcess]) -> None:
    """The host key stays pinned: with another key pinned the row names the mismatch, after one attempt."""
    path, agent = registry
    agent.start()
    [record] = load_registry(path)
    pin_host_key(record.known_hosts, agent.host, agent.port, asyncssh.generate_private_key("ssh-ed25519"))
    done = _agents(path, "--timeout", LONG)
    assert done.returncode == 3, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["reachable"], row["version"], row["health"]) == (False, "", None)
    assert row["error"].startswith(f"host key of {agent.name} ({agent.host}:{agent.port}) does not match "
                                   f"the pinned key in {record.known_hosts}")


@pytest.mark.timeout(BOUND)
def test_an_agent_that_refuses_our_key_is_given_up_after_one_attempt(
        registry: tuple[Path, AgentProcess]) -> None:
    """Our key replaced by one the agent does not know: the row says it refused our key."""
    path, agent = registry
    agent.start()
    [record] = load_registry(path)
    generate_keypair(record.client_key, "not-authorized")
    done = _agents(path, "--timeout", LONG)
    assert done.returncode == 3, done.stderr
    [row] = json.loads(done.stdout)
    assert row["reachable"] is False
    assert row["error"] == (f"{agent.name} ({agent.host}:{agent.port}) refused our key {record.client_key}: "
                            "it is not in its authorized keys")


@pytest.mark.timeout(BOUND)
async def test_an_agent_listening_half_a_second_after_the_first_attempt_still_answers(tmp_path: Path) -> None:
    """An agent mid-restart: its address refuses for 0.5 s (less than the grace), then it answers."""
    host = f"127.0.0.{AGENT_INDEX + 2}"
    port = free_port(host)
    registry = tmp_path / "registry"
    agent = prepare_agent(tmp_path / "agents", registry, AGENT_INDEX, None, registered_port=port)
    try:
        await agent.astart()
        proxy = TcpProxy(agent.host, agent.port, listen_host=host, listen_port=port)
        asking = asyncio.create_task(survey(load_registry(registry), timeout=float(LONG)))
        try:
            await asyncio.sleep(0.5)    # the restart's gap: the scenario itself, not a wait for something
            assert not asking.done()    # refused for 0.5 s: not given up yet
            await proxy.start()
            [report] = await asking
        finally:
            await cancel_and_wait([asking])
            await proxy.aclose()
        assert (report.reachable, report.error, report.version) == (True, "", VERSION)
    finally:
        await agent.astop()


def _lowered_open_files() -> None:
    """In the child: a login session's soft limit of 1024 (or lower) under the same hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@pytest.mark.timeout(BOUND)
def test_the_command_raises_its_open_files_limit_for_many_agents(registry: tuple[Path, AgentProcess]) -> None:
    """Started from a login session's soft limit, the command asks its agents under the hard limit."""
    path, _ = registry
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.fail(f"this machine's hard RLIMIT_NOFILE ({hard}) cannot show a raise")
    argv = ["convocate-host", "agents", "--json", "--registry", str(path), "--timeout", "5"]
    code = ("import resource, sys\n"
            f"sys.argv = {argv!r}\n"
            "from hostctl.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(*resource.getrlimit(resource.RLIMIT_NOFILE), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING"},
                          preexec_fn=_lowered_open_files)
    assert done.stderr.split()[-2:] == [str(hard), str(hard)], done.stderr
    [row] = json.loads(done.stdout)   # the agent (not started) is still asked and reported
    assert row["reachable"] is False

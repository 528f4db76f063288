"""`convocate-host agents --json` as a script runs it: its own process, a real agent on loopback.

The agent is the real server on the fake runtime (real asyncssh, pinned host key, key-only
auth). Issue 13 changed how the command loads its modules and how it exits; what it answers
and its exit status must stay the same.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from common.registry import load_registry
from common.ssh_keys import pin_host_key
from common.version import VERSION
from tests.support.agent_proc import AgentProcess
from tests.support.fleet import prepare_agent

AGENT_INDEX = 24   # agent-y on 127.0.0.26: clear of the other suites' addresses
FIELDS = {"agent_id", "address", "port", "reachable", "error", "version", "hostname", "current_image",
          "status_link_up", "health"}


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
    assert (row["reachable"], row["error"], row["version"]) == (True, "", VERSION)
    assert row["hostname"] == socket.gethostname()
    assert row["status_link_up"] is None    # this agent has no status service to report to
    assert row["health"]["engine_up"] is True
    assert row["health"]["engine_version"] == "0.0-fake"


def test_an_agent_that_is_down_is_a_row_saying_so_and_exit_3(registry: tuple[Path, AgentProcess]) -> None:
    """Not started: the row says it did not answer within the deadline and why; exit 3 (partial)."""
    path, agent = registry
    done = _agents(path, "--timeout", "2")
    assert done.returncode == 3, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["agent_id"], row["reachable"], row["health"]) == (agent.name, False, None)
    assert row["error"] == (f"no answer within 2 s: {agent.name} ({agent.host}:{agent.port}) refused the "
                            "connection: start its agent there (`systemctl start convocate-agent`)")


def test_an_agent_whose_host_key_differs_from_the_pinned_one_is_refused(
        registry: tuple[Path, AgentProcess]) -> None:
    """The host key stays pinned: with another key pinned for its address the row names the mismatch."""
    path, agent = registry
    agent.start()
    [record] = load_registry(path)
    pin_host_key(record.known_hosts, agent.host, agent.port, asyncssh.generate_private_key("ssh-ed25519"))
    done = _agents(path, "--timeout", "2")
    assert done.returncode == 3, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["reachable"], row["version"], row["health"]) == (False, "", None)
    assert "does not match the pinned key" in row["error"]

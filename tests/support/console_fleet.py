"""Real agents, a real status service and consoles in private tmux servers (e2e tests, benchmarks).

Usage::

    with console_fleet(root, ("127.0.0.2", "127.0.0.3"), image) as fleet:
        term = start_console(fleet, TmuxTerminal(tmux), "console-1.log")
        term.wait_for(r"agents 2 up")

Everything started is stopped on exit (agents and their containers, the status service);
the caller kills its terminals.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.identity import new_agent_id
from common.registry import register_agent
from shell.status.server import StatusConfig
from tests.support.agent_proc import AgentProcess
from tests.support.processes import stop_process
from tests.support.status_stack import agent_status_keys, status_config
from tests.support.tmux import TmuxTerminal
from tests.support.waiting import wait_for_sync

__all__ = ["ConsoleTarget", "Fleet", "console_fleet", "start_console", "start_status"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    """The agents, the status service and the files the console reads."""

    root: Path
    agents: list[AgentProcess]
    status: subprocess.Popen[bytes]
    registry: Path
    status_socket: Path


class ConsoleTarget(Protocol):
    """What a console needs to find: a scratch root, the agent registry, the status socket."""

    root: Path
    registry: Path
    status_socket: Path


def start_status(root: Path) -> tuple[subprocess.Popen[bytes], Path, StatusConfig]:
    """Start a status service process under ``root``; return it, its local socket and config."""
    config = status_config(root / "status", heartbeat_interval=1.0)
    toml = root / "status.toml"
    toml.write_text(
        "[status]\n"
        f'host = "{config.host}"\nport = {config.port}\nhost_key = "{config.host_key}"\n'
        f'authorized_keys = "{config.authorized_keys}"\nsocket = "{config.socket}"\n'
        "heartbeat_interval = 1.0\n")
    config.authorized_keys.touch(mode=0o600)
    with (root / "status.log").open("ab") as log:  # the child keeps its own descriptor
        argv = [sys.executable, "-m", "shell.main", "status", "serve", "--config", str(toml)]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, config.socket, config


@contextmanager
def console_fleet(root: Path, hosts: Sequence[str], image: str) -> Iterator[Fleet]:
    """Start the status service and one agent per loopback address in ``hosts``; stop all after."""
    status, socket, config = start_status(root)
    agents: list[AgentProcess] = []
    try:
        wait_for_sync(socket.exists, timeout=20)
        registry = root / "registry"
        for i, host in enumerate(hosts):
            aroot = root / f"a{i + 1}"
            agent_id = new_agent_id()
            key, known = agent_status_keys(config, aroot, agent_id)
            agent_config = {"status_host": "127.0.0.1", "status_port": config.port,
                            "status_client_key": key,
                            "status_known_hosts": known, "heartbeat_interval": 1.0}
            agent = AgentProcess(aroot, host=host, image=image, name=f"a{i + 1}", agent_id=agent_id,
                                 config=agent_config)
            agents.append(agent)
            agent.start()
            host_pub = Path(str(agent.keys.host_key) + ".pub").read_text()
            register_agent(registry, agent.agent_id, host, agent.port, agent.keys.client_key, host_pub)
        yield Fleet(root, agents, status, registry, socket)
    finally:
        for agent in agents:
            agent.close()
        stop_process(status)


def start_console(fleet: ConsoleTarget, term: TmuxTerminal, log_name: str) -> TmuxTerminal:
    """Run the console against ``fleet`` in ``term`` (a fresh private tmux server)."""
    empty = fleet.root / "empty.toml"
    empty.write_text("")
    env = {
        "CONVOCATE_CONFIG": str(empty), "CONVOCATE_SHELL_ORPHANS_ROOT": str(fleet.root / "none"),
        "CONVOCATE_SHELL_DNSMASQ_HOSTS": str(fleet.root / "dnsmasq-hosts"),
        "CONVOCATE_SHELL_RUNTIME_DIR": str(fleet.root), "CI": "",
    }
    argv = [sys.executable, "-c", "from shell.main import main; main()",
            "--registry-dir", str(fleet.registry), "--status-socket", str(fleet.status_socket),
            "--log-file", str(fleet.root / log_name), "--expected-uid", "-1"]
    term.start(argv, env, cwd=str(REPO))
    return term

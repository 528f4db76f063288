"""Provisioning a fleet the way the README tells an operator: install, init-shell, init-agent.

``convocate-host install --host`` and ``init-shell --host`` run from the test machine.
``init-agent`` runs on the shell host as the operator (it registers the agent in the shell's
registry), over real SSH to the agent host with the operator's key and ``sudo -n``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass

from common.ssh_keys import known_hosts_line
from common.version import VERSION
from tests.hosts.agent_host import (
    CLAUDE_STAND_IN,
    load_image,
    unit_state,
)
from tests.hosts.engine import DAEMON_JSON, install_docker
from tests.hosts.machines import Host, RemoteError
from tests.support.waiting import wait_for_sync

__all__ = [
    "AgentInfo",
    "base_install",
    "hostctl_local",
    "init_agent",
    "prepare_operator_on_shell",
    "shell_role",
]

OPERATOR_KEY_ON_SHELL = "/home/admin/.ssh/id_ed25519"
KNOWN_HOSTS_ON_SHELL = "/home/admin/.ssh/known_hosts"
HOSTCTL_TIMEOUT = 600.0


def hostctl_local(*args: str, timeout: float = HOSTCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``convocate-host ARGS`` on the test machine; raise with its output when it fails."""
    argv = [sys.executable, "-m", "hostctl", *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise RemoteError(f"convocate-host {' '.join(args[:2])} exited {r.returncode}\n"
                          f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
    return r


def _host_options(host: Host) -> list[str]:
    return ["--host", host.address, "--user", host.user, "--key", str(host.key),
            "--known-hosts", str(host.known_hosts)]


def base_install(host: Host) -> None:
    """Docker (vfs), the packages and convocate on ``host``, by ``convocate-host install --host``.

    The engine's ``daemon.json`` (vfs: no overlay inside a container) is the machine's own
    configuration, written before docker.io is installed, as a provider's image would have it.
    """
    config = json.dumps(DAEMON_JSON)
    host.sudo(f"install -d -m 755 /etc/docker && printf '%s\\n' '{config}' > /etc/docker/daemon.json")
    hostctl_local("install", *_host_options(host))
    install_docker(host)   # finds it installed; waits until the engine answers
    # The Claude CLI the agent mounts into sessions (a stand-in: the offline image needs no CLI).
    host.sudo(f"test -x /usr/local/bin/claude || {{ printf %s {shlex.quote(CLAUDE_STAND_IN)} "
              "> /usr/local/bin/claude && chmod 755 /usr/local/bin/claude; }")


def shell_role(shell: Host, image: str) -> None:
    """The shell role on ``shell`` by ``convocate-host init-shell --host``.

    ``image`` (the offline session image) is loaded into the shell's engine as
    ``convocate:<version>``, the tag ``init-agent`` pushes by default.
    """
    load_image(shell, image, as_tag=f"convocate:{VERSION}")
    # Agents reach the listener at the shell's address on the fleet's network; the session
    # image is the offline one (already loaded under its content tag, so not rebuilt).
    hostctl_local("init-shell", *_host_options(shell), "--log-name", shell.internal_ip, "--base", "offline")


def prepare_operator_on_shell(shell: Host, agents: list[Host]) -> None:
    """The operator's key and the agent hosts' pinned host keys in admin's ``~/.ssh`` on the shell."""
    shell.run(f"umask 077 && cat > {OPERATOR_KEY_ON_SHELL}", stdin=shell.key.read_text())
    lines = []
    for agent in agents:
        key = agent.docker_exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        lines.append(known_hosts_line(agent.internal_ip, 22, key))
    shell.run(f"umask 077 && cat > {KNOWN_HOSTS_ON_SHELL}", stdin="\n".join(lines) + "\n")


@dataclass(frozen=True)
class AgentInfo:
    """An agent as init-agent reported it."""

    host: Host
    agent_id: str
    report: dict[str, object]


def init_agent(shell: Host, agent: Host) -> AgentInfo:
    """``sudo -n convocate-host init-agent --host <agent> --status-address <shell> --json`` on the shell."""
    out = shell.sudo(
        f"convocate-host init-agent --host {agent.internal_ip} --status-address {shell.internal_ip} "
        f"--user {agent.user} --key {OPERATOR_KEY_ON_SHELL} --known-hosts {KNOWN_HOSTS_ON_SHELL} --json",
        timeout=HOSTCTL_TIMEOUT).stdout
    report = json.loads(out.strip().splitlines()[-1])
    agent_id = agent.run("cat /etc/convocate-agent/agent-id").stdout.strip()
    wait_for_sync(lambda: unit_state(agent, "convocate-agent.service") == "active", timeout=60, interval=0.5)
    return AgentInfo(agent, agent_id, report)
